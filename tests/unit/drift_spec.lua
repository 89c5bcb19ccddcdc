-- tlr.apps.drift's comparison: what the plan set against what the API
-- server returns (defaults added, quantities rewritten, empty fields left
-- out) is no drift; a changed or removed field is, named by its path.
local drift = require "tlr.apps.drift"
local crypto = require "tlr.crypto"

describe("tlr.apps.drift.diff", function()
  local want = {
    apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "x", labels = { app = "x" } },
    spec = { replicas = 2, template = { spec = { containers = { { name = "c", image = "i:1",
      resources = { requests = { cpu = "0.5", memory = "1024Mi" } }, args = {} } }, nodeSelector = {} } } },
  }

  it("accepts the server's defaults, rewritten quantities and left-out empty fields", function()
    local live = {
      apiVersion = "apps/v1", kind = "Deployment",
      metadata = { name = "x", labels = { app = "x" }, uid = "u", resourceVersion = "7" },
      spec = { replicas = 2, strategy = { type = "RollingUpdate" }, template = { spec = { containers = { {
        name = "c", image = "i:1", imagePullPolicy = "IfNotPresent",
        resources = { requests = { cpu = "500m", memory = "1Gi" } } } }, dnsPolicy = "ClusterFirst" } } },
      status = { readyReplicas = 1 },
    }
    assert.is_nil(drift.diff(want, live))
  end)

  it("names the first field that differs", function()
    local live = { metadata = { name = "x", labels = { app = "x" } }, spec = { replicas = 3,
      template = { spec = { containers = { { name = "c", image = "i:1",
        resources = { requests = { cpu = "500m", memory = "1Gi" } } } } } } } }
    assert.are.equal("spec.replicas", drift.diff(want, live))
    live.spec.replicas = 2
    live.spec.template.spec.containers[1].resources.requests.memory = "2Gi"
    assert.are.equal("spec.template.spec.containers[0].resources.requests.memory", drift.diff(want, live))
    live.spec.template.spec.containers[1].resources.requests.memory = "1Gi"
    live.metadata.labels = {}
    assert.are.equal("metadata.labels.app", drift.diff(want, live))
  end)

  it("compares a Secret's stringData with its data, never printing a value", function()
    local s = { apiVersion = "v1", kind = "Secret", metadata = { name = "s" }, stringData = { token = "sekrit" } }
    assert.is_nil(drift.diff(s, { metadata = { name = "s" }, data = { token = crypto.base64_encode("sekrit") } }))
    local why = drift.diff(s, { metadata = { name = "s" }, data = { token = crypto.base64_encode("other") } })
    assert.are.equal("stringData.token", why)
    assert.not_matches("sekrit", why)
  end)
end)
