-- How the bench files print: one figure a line (name, value, unit, target
-- or remark), indented notes, and shell quoting for the commands they run.
local M = {}

function M.report(name, value, unit, target)
  io.write(string.format("%-52s %10.3f %-6s %s\n", name, value, unit, target or ""))
  io.flush()
end

function M.note(text)
  io.write("  ", text, "\n")
  io.flush()
end

function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

return M
