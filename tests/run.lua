-- Runs the busted specs inside the tlr binary, so they exercise the real
-- native modules:  build/tlr tests/run.lua [busted args] [spec dirs/files]
-- Defaults to tests/unit and tests/integration.  tests/output.lua prints the
-- closing "N passed, N failed" line CI reads.
local args = { ... }
local has_path = false
for _, a in ipairs(args) do
  if a:sub(1, 1) ~= "-" then has_path = true end
end
if not has_path then
  args[#args + 1] = "tests/unit"
  args[#args + 1] = "tests/integration"
end
package.path = "./tests/?.lua;" .. package.path
_G.arg = { [0] = "tests/run.lua", "-o", "tests/output.lua", "--pattern=_spec", table.unpack(args) }
require("busted.runner")({ standalone = false })
