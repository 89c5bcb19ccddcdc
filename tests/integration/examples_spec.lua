-- examples/: every site file validates; the CI workflows are valid YAML that
-- run real tlr commands on the per-step recipes, and their shell steps work
-- (deploy, encrypted state, plan) against a private lab; the GPU pool recipe
-- brings a cluster up with its pool there (PCI passthrough in the Proxmox
-- fake, the patch in the Talos config, label and taint on the Nodes), a
-- re-run changes nothing and destroy removes it.
local H = require "helper"
local L = require "lab_helper"
local json = require "tlr.json"
local site = require "tlr.site"
local yaml = require "tlr.yaml"

local bin = os.getenv("TLR_BIN") or "build/tlr"
local repo = H.capture("pwd"):gsub("%s+$", "")
local STEPS = { "image", "control-plane", "worker", "dns", "bootstrap", "apps" }

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function pattern(s) return (s:gsub("[%p]", "%%%0")) end

local function count(text, s)
  local n = 0
  for _ in text:gmatch(pattern(s)) do n = n + 1 end
  return n
end

-- plausible values for every env: reference the examples use
local EX_ENV = {
  PVE_ENDPOINT = "https://10.0.0.2:8006",
  PVE_TOKEN = "root@pam!tlr=0b7c5a52-5a0e-4a54-9d4b-1b1c4f0e2d11",
  PVE_PASSWORD = "example-password", PVE_FINGERPRINT = string.rep("5A:", 31) .. "5A",
  FACTORY_URL = "http://10.0.0.5:8080", DNS_ZONE = "lab.test", DNS_SERVER = "10.0.0.53",
  DNS_PORT = "53", DNS_KEY_NAME = "tlr-key", DNS_KEY_ALGORITHM = "hmac-sha256",
  DNS_KEY_SECRET = "ZXhhbXBsZS10c2lnLXNlY3JldA==",
  CLOUDFLARE_TOKEN = "cf-example-token-0000000000000000",
  CLOUDFLARE_API_TOKEN = "cf-example-token-1111111111111111", GITHUB_TOKEN = "ghp_example0000",
}

-- The site files: examples/*.lua|yaml that describe nodes (not recipes), and the GPU site.
local function site_files()
  local files = {}
  for name in H.capture("ls examples"):gmatch("[^\n]+") do
    local path = "examples/" .. name
    if name:match("%.lua$") or name:match("%.ya?ml$") then
      local text = H.read(path)
      if not text:match("require") and (text:match("nodes = {") or text:match("\nnodes:")) then
        files[#files + 1] = path
      end
    end
  end
  files[#files + 1] = "examples/gpu-pool/site.lua"
  return files
end

-- Every `tlr ...` line of a shell script: {options = {...}, command, file, line}.
local function tlr_commands(script)
  local found = {}
  for line in script:gmatch("[^\n]+") do
    local rest = line:match("^%s*tlr%s+(.*)$")
    if rest then
      local words = {}
      for w in rest:gmatch("%S+") do words[#words + 1] = w end
      local c, i = { options = {}, line = line }, 1
      while words[i] and words[i]:sub(1, 2) == "--" do
        c.options[#c.options + 1] = words[i]
        i = i + 1
      end
      c.command, c.file = words[i], words[i + 1]
      found[#found + 1] = c
    end
  end
  return found
end

-- The commands `tlr help` lists (the first word of each line under "commands:").
local function tlr_command_names()
  local names = {}
  local block = H.capture(bin .. " help"):match("commands:\n(.-)\n\n")
  for line in block:gmatch("[^\n]+") do names[line:match("^%s+(%S+)")] = true end
  return names
end

-- The `run` steps of a GitHub Actions job: {name=, run=}, without the one named `skip`.
local function gha_runs(job, skip)
  local out = {}
  for _, s in ipairs(job.steps) do
    if s.run and s.name ~= skip then out[#out + 1] = { name = s.name or s.run, run = s.run } end
  end
  return out
end

-- A GitLab job's before_script, script or after_script (its own, or its template's).
local function gitlab_script(ci, name, key)
  local job = ci[name]
  return table.concat(job[key] or (ci[job.extends] or {})[key] or {}, "\n")
end

describe("examples", function()
  local gha = assert(yaml.decode(H.read("examples/ci/github-actions.yml")))
  local gitlab = assert(yaml.decode(H.read("examples/ci/gitlab-ci.yml")))

  describe("site files", function()
    it("every site file validates with its env: and file: references", function()
      local dir = H.tmpdir()
      finally(function() H.capture("rm -rf " .. quote(dir)) end)
      local ca = H.read("tests/fixtures/sites/ca.pem")
      local files = {
        ["pve-root-ca.pem"] = ca, ["secrets/pve-root-ca.pem"] = ca,
        ["secrets/tsig.key"] = "ZXhhbXBsZS10c2lnLXNlY3JldA==\n",
        ["secrets/argocd-deploy-key"] = "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
          .. "-----END OPENSSH PRIVATE KEY-----\n",
        ["home/.config/tlr/pve-token"] = "root@pam!tlr=0b7c5a52-5a0e-4a54-9d4b-1b1c4f0e2d11\n",
      }
      for path, data in pairs(files) do
        local parent = path:match("^(.*)/[^/]+$")
        if parent then H.capture("mkdir -p " .. quote(dir .. "/" .. parent)) end
        H.write(dir .. "/" .. path, data)
        H.capture("chmod 600 " .. quote(dir .. "/" .. path)) -- secret files must be private
      end
      local n = 0
      for _, path in ipairs(site_files()) do
        local copy = dir .. "/" .. path:gsub("^examples/", ""):gsub("/", "-")
        H.write(copy, H.read(path))
        local s, warnings = site.load(copy, { env = function(k)
          if k == "HOME" then return dir .. "/home" end
          return EX_ENV[k]
        end })
        assert(s, path .. ": " .. tostring(warnings))
        for _, w in ipairs(warnings) do
          -- one host, one control plane: on purpose
          assert.are.equal("examples/homelab-single-host.lua", path, w)
        end
        n = n + 1
      end
      assert.is_true(n >= 6, n .. " site files")
    end)

    it("the GPU site makes its pool: labelled, patched, bigger, one per GPU host", function()
      local s = assert(site.load("examples/gpu-pool/site.lua",
        { env = function(k) return EX_ENV[k] end }))
      local pool = {}
      for _, n in ipairs(s.nodes) do
        if n.labels["nvidia.com/gpu.present"] == "true" then pool[#pool + 1] = n end
      end
      assert.are.same({ "gpu1", "gpu2" }, { pool[1].name, pool[2].name })
      assert.are.same({ "pve2", "pve3" }, { pool[1].host, pool[2].host })
      for _, n in ipairs(pool) do
        assert.are.equal("worker", n.role)
        assert.are.equal(32768, n.memory)
        local m = n.patches[1].machine
        assert.are.equal("present:NoSchedule", m.nodeTaints["nvidia.com/gpu"])
        assert.are.equal("nvidia", m.kernel.modules[1].name)
      end
      assert.are.equal("w1", s.nodes[4].name)
      assert.are.same({}, s.nodes[4].patches) -- a general worker has none
    end)
  end)

  describe("CI workflows", function()
    -- every shell text of both workflows, named for messages
    local function scripts()
      local all = {}
      for name, job in pairs(gha.jobs) do
        for _, r in ipairs(gha_runs(job)) do
          all[#all + 1] = { where = "github " .. name, text = r.run }
        end
      end
      for _, name in ipairs { "plan", "deploy" } do
        for _, key in ipairs { "before_script", "script", "after_script" } do
          all[#all + 1] = { where = "gitlab " .. name, text = gitlab_script(gitlab, name, key) }
        end
      end
      return all
    end

    local function recipes(text, mode)
      local list = {}
      for _, c in ipairs(tlr_commands(text)) do
        if c.command == mode then list[#list + 1] = c.file:match("^recipes/(.+)%.lua$") end
      end
      return list
    end

    local function gha_text(job)
      local parts = {}
      for _, r in ipairs(gha_runs(gha.jobs[job])) do parts[#parts + 1] = r.run end
      return table.concat(parts, "\n")
    end

    it("run only real tlr commands, with --json, on recipes that exist", function()
      local names = tlr_command_names()
      assert.is_true(names.run and names.plan and names.output and not names.FILE)
      local n = 0
      for _, s in ipairs(scripts()) do
        for _, c in ipairs(tlr_commands(s.text)) do
          assert.is_true(names[c.command] == true, s.where .. ": " .. c.line)
          assert.are.same({ "--json" }, c.options, s.where .. ": " .. c.line)
          local f = io.open(c.file, "r")
          assert(f, s.where .. ": no such recipe: " .. c.line)
          f:close()
          n = n + 1
        end
      end
      assert.are.equal(4 * #STEPS, n) -- plan and run, in each of the two
    end)

    it("plan every per-step recipe on pull/merge requests, run them in order on main", function()
      assert.are.same(STEPS, recipes(gha_text("plan"), "plan"))
      assert.are.same(STEPS, recipes(gha_text("deploy"), "run"))
      assert.are.same(STEPS, recipes(gitlab_script(gitlab, "plan", "script"), "plan"))
      assert.are.same(STEPS, recipes(gitlab_script(gitlab, "deploy", "script"), "run"))
      assert.is_not_nil(gha.on.pull_request) -- every pull request (an empty value in the YAML)
      assert.are.same({ "main" }, gha.on.push.branches)
      assert.matches("github.event_name == 'pull_request'", gha.jobs.plan["if"], 1, true)
      assert.matches("github.event_name == 'push'", gha.jobs.deploy["if"], 1, true)
      assert.are.equal('$CI_PIPELINE_SOURCE == "merge_request_event"', gitlab.plan.rules[1]["if"])
      assert.are.equal("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH", gitlab.deploy.rules[1]["if"])
    end)

    it("never run two deploys at once and keep the state only encrypted", function()
      local c = gha.jobs.deploy.concurrency
      assert.is_string(c.group)
      assert.is_false(c["cancel-in-progress"])
      assert.are.equal("production", gitlab.deploy.resource_group)
      assert.are.equal("tlr-state.tar.gpg", gha.env.TLR_STATE_TAR)
      assert.are.same({ gha.env.TLR_STATE_TAR }, gitlab[".tlr"].cache.paths)
      assert.are.same({ gha.env.TLR_STATE_TAR }, gitlab.deploy.cache.paths)
      -- encrypted with the key from the secret store, the plain tarball removed
      local encrypt
      for _, s in ipairs(gha.jobs.deploy.steps) do
        if s.name == "Encrypt the state" then encrypt = s.run end
      end
      for _, text in ipairs { encrypt, table.concat(gitlab.deploy.after_script, "\n") } do
        assert.matches("tar %-cf tlr%-state%.tar %.tlr\n", text)
        assert.matches("%-%-passphrase%-fd 0 %-%-symmetric %-%-cipher%-algo AES256 ", text)
        assert.matches("\n%s*rm tlr%-state%.tar\n", text)
      end
    end)

    it("give their site's env: references to both GitHub jobs, name them for GitLab", function()
      local site_file = gha.env.TLR_SITE
      assert.are.equal(site_file, gitlab.variables.TLR_SITE)
      local refs = {}
      for name in H.read(site_file):gmatch('"env:([%w_]+)"') do refs[#refs + 1] = name end
      assert.is_true(#refs >= 3)
      local gitlab_text = H.read("examples/ci/gitlab-ci.yml")
      for _, name in ipairs(refs) do
        for _, job in ipairs { "plan", "deploy" } do
          assert.is_string(gha.jobs[job].env[name], job .. " lacks " .. name)
        end
        assert.matches(name, gitlab_text, 1, true)
      end
    end)
  end)

  describe("on a private lab", function()
    local dir, env, net

    -- a 127.N net no other lab on this machine listens in
    local function free_net()
      math.randomseed(os.time() + math.floor(os.clock() * 1e6))
      local used = H.capture("ss -Hltn")
      for _ = 1, 50 do
        local n = math.random(100, 250)
        if n ~= 77 and not used:find("127." .. n .. ".", 1, true) then return "127." .. n end
      end
      error("no free 127.N net")
    end

    -- `env K=V ...` with the lab's env file and `extra`
    local function envs(extra)
      local vars = {}
      for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. quote(v) end
      for k, v in pairs(extra or {}) do vars[#vars + 1] = k .. "=" .. quote(v) end
      return "env " .. table.concat(vars, " ")
    end

    local function tlr(mode, recipe, site_file)
      return H.capture(string.format("%s %s %s %s %s", envs(), bin, mode, recipe, quote(site_file)))
    end

    local function control(method, path)
      local url = quote(env.LAB_CONTROL .. path)
      return json.decode(H.capture(string.format("curl -s -X %s %s", method, url)))
    end

    -- the Proxmox fake's VMs by name: {node, vmid, config, pending}
    local function vms()
      local list = {}
      for node, v in pairs(control("GET", "/pve/state").nodes) do
        for _, vm in ipairs(v.vms or {}) do
          list[vm.config.name] = { node = node, vmid = vm.vmid, config = vm.config,
            pending = vm.pending }
        end
      end
      return list
    end

    setup(function()
      dir = H.tmpdir()
      net = free_net()
      local out, rc = H.capture(string.format("bash tests/lab/ctl.sh start %s %s test",
        quote(dir .. "/lab"), net))
      assert(rc == 0, out)
      env = assert(L.read_env(dir .. "/lab/env"))
    end)

    teardown(function()
      if dir then
        H.capture("bash tests/lab/ctl.sh stop " .. quote(dir .. "/lab"))
        H.capture("rm -rf " .. quote(dir))
      end
    end)

    describe("the GPU pool recipe", function()
      local RECIPE = "examples/gpu-pool/recipe.lua"
      local site_file

      setup(function()
        -- the GPU site on the lab's net, with the lab's factory and a private state
        local text, n1, n2, n3 = H.read("examples/gpu-pool/site.lua"), 0, 0, 0
        text, n1 = text:gsub('\nlocal net = "10%.30%.0%."', '\nlocal net = "' .. net .. '.0."')
        text, n2 = text:gsub('\n  name = "gpu",\n',
          '\n  name = "gpu",\n  state_dir = "' .. dir .. '/gpu-state",\n')
        text, n3 = text:gsub('\n    version = "(v[%d.]+)",\n',
          '\n    version = "%1",\n    factory = "env:FACTORY_URL",\n')
        assert.are.same({ 1, 1, 1 }, { n1, n2, n3 })
        site_file = dir .. "/gpu-site.lua"
        H.write(site_file, text)
      end)

      it("plans the GPU VMs and their cards", function()
        local out, rc = tlr("plan", RECIPE, site_file)
        assert.are.equal(0, rc, out)
        for _, want in ipairs {
          "+ create vm gpu1 (pve2, 8 cores, 32768 MiB, 100 GiB, hostpci0=mapping=gpu,pcie=1)",
          "+ create vm gpu2 (pve3, 8 cores, 32768 MiB, 100 GiB, hostpci0=mapping=gpu,pcie=1)",
          "+ create talos config gpu2",
        } do
          assert.matches(pattern(want), out)
        end
        assert.matches(pattern("+ create vm w1 (pve1, 4 cores, 8192 MiB, 40 GiB)\n"), out)
        assert.are.same({}, vms())
      end)

      it("brings the cluster up with the pool: cards, patch, label and taint", function()
        local out, rc = tlr("run", RECIPE, site_file)
        assert.are.equal(0, rc, out)
        assert.matches("gpu nodes [%d.]+s", out)
        assert.matches("gpu1%s+Ready", out)
        local list = vms()
        for _, name in ipairs { "gpu1", "gpu2" } do
          assert.are.equal("mapping=gpu,pcie=1", list[name].config.hostpci0)
          assert.is_nil(list[name].pending) -- set when the VM was made: nothing waits for a restart
        end
        assert.is_nil(list.w1.config.hostpci0)
        assert.is_nil(list.cp1.config.hostpci0)
        -- the Talos config a GPU node runs has the pool's patch; the general worker's has not
        local gpu = control("GET", "/talos/nodes/gpu1").config
        for _, want in ipairs { "nodeTaints:\n%s+nvidia%.com/gpu: present:NoSchedule",
          "%- +name: nvidia_uvm", "net%.core%.bpf_jit_harden: '1'",
          "nvidia%.com/gpu%.present: 'true'" } do
          assert.matches(want, gpu)
        end
        assert.not_matches("nvidia", control("GET", "/talos/nodes/w1").config)
        -- and Kubernetes sees the label and the taint
        local k8s = assert(require("tlr.k8s").connect {
          kubeconfig = H.read(dir .. "/gpu-state/kubeconfig") })
        local node = assert(k8s:get("v1", "Node", "gpu2"))
        assert.are.equal("true", node.metadata.labels["nvidia.com/gpu.present"])
        assert.are.same({ { key = "nvidia.com/gpu", value = "present", effect = "NoSchedule" } },
          node.spec.taints)
        assert.is_nil(assert(k8s:get("v1", "Node", "w1")).spec.taints)
      end)

      it("re-runs without a change or a mutating call", function()
        control("DELETE", "/log")
        local out, rc = tlr("run", RECIPE, site_file)
        assert.are.equal(0, rc, out)
        assert.matches("Up to date: nothing changed%.", out)
        local writes, reads = {}, 0
        for _, e in ipairs(control("GET", "/log?limit=5000")) do
          if e.service == "pve" and e.method ~= "GET" then
            writes[#writes + 1] = e.method .. " " .. e.path
          end
          if e.service == "pve" and e.path:match("/qemu/90[45]/pending$") then reads = reads + 1 end
        end
        assert.are.same({}, writes)
        assert.is_true(reads >= 2) -- the GPU VMs' cards were read
        assert.matches("No changes%.", tlr("plan", RECIPE, site_file))
      end)

      it("destroy removes the pool with the cluster", function()
        local out, rc = tlr("destroy", RECIPE, site_file)
        assert.are.equal(0, rc, out)
        assert.matches("%- delete vm gpu1", out)
        assert.are.same({}, vms())
        local dig = H.capture(string.format("dig +short -p %s @%s gpu2.lab.test A", env.DNS_PORT,
          env.DNS_SERVER))
        assert.are.equal("", dig)
      end)
    end)

    describe("the CI workflows' steps", function()
      local site_file, bindir

      -- Runs a workflow's shell text in `cwd` as CI would (bash -eo pipefail)
      -- with the lab's environment, tlr on PATH and the site in $TLR_SITE.
      local function sh(cwd, text, extra)
        H.write(cwd .. "/.ci-step.sh", text)
        local vars = { PATH = bindir .. ":" .. os.getenv("PATH"), TLR_SITE = site_file,
          TLR_STATE_TAR = gha.env.TLR_STATE_TAR, TLR_STATE_KEY = "the lab's state key, no secret",
          GNUPGHOME = dir .. "/gnupg", GITHUB_STEP_SUMMARY = cwd .. "/summary.md" }
        for k, v in pairs(extra or {}) do vars[k] = v end
        return H.capture(string.format("cd %s && %s bash -eo pipefail .ci-step.sh", quote(cwd),
          envs(vars)))
      end

      -- A job's directory: the repository's recipes, and the state another job saved.
      local function workdir(name, state_from)
        local d = dir .. "/" .. name
        H.capture(string.format("mkdir -p %s && ln -s %s %s/recipes", quote(d),
          quote(repo .. "/recipes"), quote(d)))
        if state_from then
          H.capture(string.format("cp %s/tlr-state.tar.gpg %s/", quote(state_from), quote(d)))
        end
        return d
      end

      -- A GitLab job's shell: before_script without the build, then script (one shell).
      local function gitlab_job(name)
        local lines = {}
        local job = gitlab[name]
        for _, l in ipairs(job.before_script or gitlab[job.extends].before_script) do
          if not (l:match("^apt%-get") or l:match("^make ") or l:match("^install ")) then
            lines[#lines + 1] = l
          end
        end
        return table.concat(lines, "\n") .. "\n" .. table.concat(job.script, "\n")
      end

      setup(function()
        -- the lab site as the repository's site, with the default state_dir
        -- (.tlr/lab in the job's directory)
        local text, n1, n2 = H.read("examples/lab.lua"), 0, 0
        text, n1 = text:gsub("127%.77%.", net .. ".")
        text, n2 = text:gsub('"tests/fixtures/argocd/install%.yaml"',
          '"' .. repo .. '/tests/fixtures/argocd/install.yaml"')
        assert.is_true(n1 > 5 and n2 == 1)
        site_file = dir .. "/ci-site.lua"
        H.write(site_file, text)
        bindir = dir .. "/bin"
        local exe = bin:sub(1, 1) == "/" and bin or (repo .. "/" .. bin)
        H.capture(string.format("mkdir -p %s %s/gnupg && chmod 700 %s/gnupg && ln -s %s %s/tlr",
          quote(bindir), quote(dir), quote(dir), quote(exe), quote(bindir)))
      end)

      it("GitHub deploy: stops without a state, else runs each step, saves the state encrypted",
        function()
        local cwd = workdir("gha-deploy")
        local steps = gha_runs(gha.jobs.deploy, "Build tlr")
        assert.are.equal("Decrypt the state", steps[1].name)
        local out, rc = sh(cwd, steps[1].run)
        assert.are_not.equal(0, rc)
        assert.matches("no saved state", out)
        local log = {}
        for _, step in ipairs(steps) do
          out, rc = sh(cwd, step.run, { TLR_NEW_CLUSTER = "yes" })
          assert.are.equal(0, rc, step.name .. ": " .. out)
          log[#log + 1] = out
        end
        log = table.concat(log)
        for _, want in ipairs { "+ create vm cp1", "+ create dns api.lab.test",
          "+ create etcd bootstrap on cp1", "+ create apps", "w2%s+Ready" } do
          assert.matches(want, log)
        end
        local runs = 0
        for line in H.read(cwd .. "/events.jsonl"):gmatch("[^\n]+") do
          local e = assert(json.decode(line), line)
          if e.event == "summary" then
            runs = runs + 1
            assert.are.equal("run", e.mode)
          end
        end
        assert.are.equal(#STEPS, runs)
        assert.is_nil(io.open(cwd .. "/tlr-state.tar", "r")) -- no plain copy left behind
        local enc = H.read(cwd .. "/tlr-state.tar.gpg")
        assert.not_matches("secrets%.yaml", enc)
        assert.not_matches("talosconfig", enc)
      end)

      it("GitLab plan from that state, with a read-only token: no step plans a change", function()
        local cwd = workdir("gitlab-plan", dir .. "/gha-deploy")
        -- plan only reads: the lab's PVEAuditor token is enough
        local out, rc = sh(cwd, gitlab_job("plan"),
          { CI_JOB_NAME = "plan", PVE_TOKEN = env.PVE_TOKEN_AUDIT })
        assert.are.equal(0, rc, out)
        assert.are.equal(#STEPS, count(H.read(cwd .. "/plan.txt"), "No changes."))
      end)

      it("GitLab deploy from that state: up to date, the state saved again", function()
        local cwd = workdir("gitlab-deploy", dir .. "/gha-deploy")
        local before = H.read(cwd .. "/tlr-state.tar.gpg")
        local out, rc = sh(cwd, gitlab_job("deploy"), { CI_JOB_NAME = "deploy" })
        assert.are.equal(0, rc, out)
        assert.are.equal(#STEPS, count(out, "Up to date: nothing changed."))
        out, rc = sh(cwd, table.concat(gitlab.deploy.after_script, "\n"))
        assert.are.equal(0, rc, out)
        assert.are_not.equal(before, H.read(cwd .. "/tlr-state.tar.gpg")) -- encrypted anew
      end)

      it("GitHub plan from GitLab's state: no change, the diff in the job summary", function()
        local cwd = workdir("gha-plan", dir .. "/gitlab-deploy")
        for _, step in ipairs(gha_runs(gha.jobs.plan, "Build tlr")) do
          local out, rc = sh(cwd, step.run)
          assert.are.equal(0, rc, step.name .. ": " .. out)
        end
        local summary = H.read(cwd .. "/summary.md")
        assert.matches("^```diff\n", summary)
        assert.are.equal(#STEPS, count(summary, "No changes."))
        -- and the cluster goes, from that job's state
        local out, rc = H.capture(string.format("cd %s && %s %s/tlr destroy recipes/cluster.lua %s",
          quote(cwd), envs(), quote(bindir), quote(site_file)))
        assert.are.equal(0, rc, out)
        assert.are.same({}, vms())
      end)
    end)
  end)
end)
