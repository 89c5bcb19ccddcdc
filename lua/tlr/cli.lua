--- The command line: `tlr COMMAND ...`.  runtime/main.c calls `main(argv)`
--- and exits with what it returns: 0 success, 1 failure, 2 usage or invalid input.
local M = {}

local USAGE = [[
usage: tlr [--debug] [--json] [--lua-dir DIR] COMMAND [ARGS]

commands:
  run FILE [ARGS]      run a recipe or script: bring the cluster to the described state
  plan FILE [ARGS]     show what `run` would change, changing nothing
  destroy FILE [ARGS]  take down what the recipe describes
  repl                 interactive Lua with the tlr modules (Proxmox, Talos, Kubernetes)
  output WHAT SITE     print kubeconfig, talosconfig, secrets or inventory from the state
  version              versions of tlr and the libraries it uses
  help [COMMAND]       this text, or one command's
  -e CODE              run a chunk of Lua
  SCRIPT.lua [ARGS]    run a Lua script

options:
  --debug          print tracebacks with errors
  --json           machine-readable output: one JSON event per line
  --lua-dir DIR    load tlr's Lua modules from DIR before the embedded ones
                   (also $TLR_LUA_PATH)
]]

local HELP = {
  run = [[
usage: tlr run FILE [ARGS]
Runs FILE (a recipe or any Lua script) as the main task, with mode "run".
The recipe reads the current state, changes what differs and waits for the
result.  ARGS reach the script as `arg` and `...`.]],
  plan = [[
usage: tlr plan FILE [ARGS]
Runs FILE with mode "plan": everything is read, nothing is changed, and the
difference is printed per resource.  Secrets are redacted.]],
  destroy = [[
usage: tlr destroy FILE [ARGS]
Runs FILE with mode "destroy": what the recipe manages is taken down.]],
  repl = [[
usage: tlr repl
Interactive Lua with line editing, history (~/.tlr_history), multi-line
input and pretty-printed results.  `tlr` is loaded; type :help inside.
Ctrl-C cancels the running call; Ctrl-D leaves.]],
  output = [[
usage: tlr output kubeconfig|talosconfig|secrets|inventory SITE
Prints one file of the cluster's state directory (the site file says where
it is) to standard output, for scripts: tlr output kubeconfig site.lua > kc.
SITE may also be given as --site SITE or $TLR_SITE.  Exit 2 when the file
does not exist yet.]],
  version = [[
usage: tlr version
Prints the versions of tlr, Lua, libcurl, nghttp2, OpenSSL, libyaml and zlib.]],
  help = "usage: tlr help [COMMAND]",
}

local EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

local function usage_error(msg)
  io.stderr:write("tlr: ", msg, "\n", "Try 'tlr help'.\n")
  return EXIT_USAGE
end

--- Prints an error the way every command does: one line, or a traceback with --debug.
local function report(err, debug_on)
  local errors = require "tlr.errors"
  local log = require "tlr.log"
  local text
  if debug_on then
    text = errors.is(err) and (tostring(err) .. "\n" .. tostring(err.traceback or "")) or tostring(err)
  else
    text = errors.message(err)
    if errors.is(err) and err.code then text = text .. " [" .. err.code .. "]" end
  end
  log.error(text)
end

local function exit_code_for(err)
  local errors = require "tlr.errors"
  if errors.is(err, "EINVAL") or errors.is(err, "EUSAGE") then return EXIT_USAGE end
  return EXIT_FAIL
end

--- Runs `fn(...)` as the main task and turns its outcome into an exit code.
local function run_main(opts, fn, ...)
  local sched = require "tlr.sched"
  local args = table.pack(...)
  local ok, err = xpcall(function() return sched.run(fn, table.unpack(args, 1, args.n)) end,
    function(e)
      if type(e) == "string" and not e:find("stack traceback:", 1, true) then
        return debug.traceback(e, 2)
      end
      return e
    end)
  for _, task in ipairs(sched.take_unobserved()) do
    require("tlr.log").warn("task '" .. task.name .. "' failed and nobody waited for it: "
      .. require("tlr.errors").message(task.err))
  end
  if ok then return EXIT_OK end
  report(err, opts.debug)
  return exit_code_for(err)
end

local function load_script(path, mode)
  local chunk, err = loadfile(path, "t")
  if not chunk then
    local f = io.open(path, "r")
    if not f then
      -- recipes/ ship inside the binary too
      local source = require("tlr.host.core").embedded(path) -- bytecode
      if source then return load(source, "@" .. path, "b") end
      return nil, string.format("cannot open '%s' (no such file)", path)
    end
    f:close()
    return nil, err
  end
  return chunk
end

local function script_command(opts, mode, path, rest)
  if not path then return usage_error((mode or "script") .. ": FILE is required") end
  local chunk, err = load_script(path, mode)
  if not chunk then
    io.stderr:write("tlr: ", err, "\n")
    return EXIT_USAGE
  end
  local tlr = require "tlr"
  tlr.mode = mode or "run"
  tlr.script = path
  -- recipes show their named tasks live (or as JSON events with --json)
  if mode then require("tlr.log").configure { progress = true } end
  local script_arg = { [0] = path }
  for i, a in ipairs(rest) do script_arg[i] = a end
  _G.arg = script_arg
  return run_main(opts, chunk, table.unpack(rest))
end

local function cmd_version()
  local v = require("tlr.host.core").versions()
  io.write(string.format("tlr %s\n%s\nlibcurl %s (nghttp2 %s)\n%s\nlibyaml %s\nzlib %s\n",
    v.tlr, v.lua, v.curl, v.nghttp2, v.openssl, v.libyaml, v.zlib))
  return EXIT_OK
end

local function cmd_help(topic)
  if not topic then
    io.write(USAGE)
    return EXIT_OK
  end
  local text = HELP[topic]
  if not text then return usage_error("no help for '" .. topic .. "'") end
  io.write(text, "\n")
  return EXIT_OK
end

--- Entry point: argv[0] is the program, argv[1..] the arguments.
function M.main(argv)
  local opts = {}
  local i = 1
  while argv[i] and argv[i]:sub(1, 2) == "--" do
    local a = argv[i]
    if a == "--" then i = i + 1 break
    elseif a == "--debug" then opts.debug = true
    elseif a == "--json" then opts.json = true
    elseif a == "--lua-dir" then i = i + 1 -- read by main.c
      if not argv[i] then return usage_error("--lua-dir needs a directory") end
    elseif a:match("^%-%-lua%-dir=") then -- read by main.c
    elseif a == "--help" then return cmd_help()
    elseif a == "--version" then return cmd_version()
    else return usage_error("unknown option '" .. a .. "'") end
    i = i + 1
  end
  local tlr = require "tlr"
  _G.tlr = tlr -- the one global the host gives scripts
  tlr.options = opts
  if opts.json then require("tlr.log").configure { json = true } end
  local command = argv[i]
  local rest = {}
  for j = i + 1, #argv do rest[#rest + 1] = argv[j] end
  if command == nil then
    io.stderr:write(USAGE)
    return EXIT_USAGE
  elseif command == "run" or command == "plan" or command == "destroy" then
    local path = table.remove(rest, 1)
    return script_command(opts, command, path, rest)
  elseif command == "output" then
    return run_main(opts, function()
      local errors = require "tlr.errors"
      local what = table.remove(rest, 1)
      if not require("tlr.state").FILES[what] then
        errors.raise("EUSAGE", "output: say kubeconfig, talosconfig, secrets or inventory")
      end
      local a = require("tlr.engine").args(rest)
      local site, msg, code = require("tlr.site").load(a.site)
      if not site then errors.raise(code or "EINVAL", msg) end
      local st = errors.check(require("tlr.state").open(site.state_dir, { lock = false }))
      local text, rmsg, rcode = st:read(what)
      if not text then
        if rmsg then errors.raise(rcode, rmsg) end
        errors.raise("EINVAL", st:path(what) .. " does not exist yet: run a recipe first")
      end
      io.stdout:write(text)
    end)
  elseif command == "repl" then
    return require("tlr.repl").main(opts)
  elseif command == "version" then
    return cmd_version()
  elseif command == "help" then
    return cmd_help(rest[1])
  elseif command == "-e" then
    local code = rest[1]
    if not code then return usage_error("-e needs a chunk of Lua") end
    local chunk, err = load(code, "=(command line)", "t")
    if not chunk then
      io.stderr:write("tlr: ", err, "\n")
      return EXIT_USAGE
    end
    table.remove(rest, 1)
    return run_main(opts, chunk, table.unpack(rest))
  elseif command:match("%.lua$") then
    return script_command(opts, nil, command, rest)
  elseif command:sub(1, 1) == "-" then
    return usage_error("unknown option '" .. command .. "'")
  end
  return usage_error("unknown command '" .. command .. "'")
end

return M
