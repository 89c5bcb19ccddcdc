-- busted output handler: the usual terminal output, then the closing line
-- "N passed, N failed" (failed counts failures and errors) that CI reads.
-- With TLR_TEST_COUNTS=FILE the counts are also written there for tests/ci.sh.
return function(options)
  local busted = require "busted"
  local term = require "term"
  local name = term.isatty(io.stdout) and "utfTerminal" or "plainTerminal"
  local handler = require("busted.outputHandlers." .. name)(options)
  busted.subscribe({ "exit" }, function()
    local passed = handler.successesCount
    local failed = handler.failuresCount + handler.errorsCount
    io.write(string.format("%d passed, %d failed\n", passed, failed))
    io.flush()
    local path = os.getenv("TLR_TEST_COUNTS")
    if path then
      local f = assert(io.open(path, "w"))
      f:write(string.format("%d %d\n", passed, failed))
      f:close()
    end
    return nil, true
  end)
  return handler
end
