-- The DNS records of the nodes and the API, in one update (the seed's dns.tf).
local engine = require "tlr.engine"
engine.open():run({ { "dns", engine.steps.dns } }, function(ctx)
  local zone = engine.steps.zone(ctx)
  if not zone then return end
  local sets = {}
  for _, s in ipairs(engine.steps.dns_sets(ctx)) do sets[#sets + 1] = { name = s.name, type = s.type } end
  local res = engine.check("dns", zone:delete(sets, { dry_run = ctx.plan }))
  for _, r in ipairs(res.sets or {}) do
    if r.changed then ctx:change("delete", "dns " .. r.name .. " " .. r.type) end
  end
end)
