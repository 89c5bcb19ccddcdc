--- The Talos API messages tlr uses, as tlr.protobuf declarations, with the
--- field numbers of the Talos 1.8–1.11 .proto files (api/common/common.proto,
--- api/machine/machine.proto, api/storage/storage.proto) and of the COSI
--- specification (proto/v1alpha1/resource.proto, state.proto) as recorded in
--- reference/talos.md §1.3 and §1.8.  Only the messages bring-up, health
--- checks and tear-down need are here; fields of other messages are skipped
--- on decode like any unknown field.
---
--- `schema` is the compiled schema, `methods` maps a short name to the gRPC
--- path, the request and response types and whether the reply is a stream:
---
--- ```lua
--- local talos = require "tlr.talos.proto"
--- local m = talos.methods.ApplyConfiguration
--- grpc.call { url = url, path = m.path, schema = talos.schema,
---   request_type = m.request, response_type = m.response,
---   request = { data = yaml, mode = "AUTO" } }
--- ```
local pb = require "tlr.protobuf"

local M = {}

M.decls = {
  -- google.rpc.Status (google/rpc/status.proto)
  { message = "google.rpc.Status",
    { 1, "code", "int32" },
    { 2, "message", "string" },
    { 3, "details", "google.protobuf.Any", repeated = true },
  },

  -- common (api/common/common.proto)
  { message = "common.Metadata",
    { 1, "hostname", "string" },
    { 2, "error", "string" },
    { 3, "status", "google.rpc.Status" },
  },
  { message = "common.Data",
    { 1, "metadata", "Metadata" },
    { 2, "bytes", "bytes" },
  },
  { message = "common.Empty", { 1, "metadata", "Metadata" } },
  { message = "common.EmptyResponse", { 1, "messages", "Empty", repeated = true } },

  -- machine.ApplyConfiguration
  -- REBOOT (0) is deprecated and the zero value: mode has presence so that
  -- AUTO and REBOOT alike are always sent (reference/talos.md §1.1)
  { enum = "machine.ApplyConfigurationRequest.Mode",
    "REBOOT", "AUTO", "NO_REBOOT", "STAGED", "TRY" },
  { message = "machine.ApplyConfigurationRequest",
    { 1, "data", "bytes" },
    { 4, "mode", "Mode", presence = true },
    { 5, "dry_run", "bool" },
    { 6, "try_mode_timeout", "google.protobuf.Duration" },
  },
  { message = "machine.ApplyConfiguration",
    { 1, "metadata", "common.Metadata" },
    { 2, "warnings", "string", repeated = true },
    { 3, "mode", "ApplyConfigurationRequest.Mode" },
    { 4, "mode_details", "string" },
  },
  { message = "machine.ApplyConfigurationResponse",
    { 1, "messages", "ApplyConfiguration", repeated = true },
  },

  -- machine.Bootstrap
  { message = "machine.BootstrapRequest",
    { 1, "recover_etcd", "bool" },
    { 2, "recover_skip_hash_check", "bool" },
  },
  { message = "machine.Bootstrap", { 1, "metadata", "common.Metadata" } },
  { message = "machine.BootstrapResponse", { 1, "messages", "Bootstrap", repeated = true } },

  -- machine.Version
  { message = "machine.VersionInfo",
    { 1, "tag", "string" },
    { 2, "sha", "string" },
    { 3, "built", "string" },
    { 4, "go_version", "string" },
    { 5, "os", "string" },
    { 6, "arch", "string" },
  },
  { message = "machine.PlatformInfo",
    { 1, "name", "string" },
    { 2, "mode", "string" },
  },
  { message = "machine.FeaturesInfo", { 1, "rbac", "bool" } },
  { message = "machine.Version",
    { 1, "metadata", "common.Metadata" },
    { 2, "version", "VersionInfo" },
    { 3, "platform", "PlatformInfo" },
    { 4, "features", "FeaturesInfo" },
  },
  { message = "machine.VersionResponse", { 1, "messages", "Version", repeated = true } },

  -- machine.ServiceList
  { message = "machine.ServiceEvent",
    { 1, "msg", "string" },
    { 2, "state", "string" },
    { 3, "ts", "google.protobuf.Timestamp" },
  },
  { message = "machine.ServiceEvents", { 1, "events", "ServiceEvent", repeated = true } },
  { message = "machine.ServiceHealth",
    { 1, "unknown", "bool" },
    { 2, "healthy", "bool" },
    { 3, "last_message", "string" },
    { 4, "last_change", "google.protobuf.Timestamp" },
  },
  { message = "machine.ServiceInfo",
    { 1, "id", "string" },
    { 2, "state", "string" },
    { 3, "events", "ServiceEvents" },
    { 4, "health", "ServiceHealth" },
  },
  { message = "machine.ServiceList",
    { 1, "metadata", "common.Metadata" },
    { 2, "services", "ServiceInfo", repeated = true },
  },
  { message = "machine.ServiceListResponse", { 1, "messages", "ServiceList", repeated = true } },

  -- machine.EtcdMemberList (member ids are uint64: above 2^63 they decode negative)
  { message = "machine.EtcdMemberListRequest", { 1, "query_local", "bool" } },
  { message = "machine.EtcdMember",
    { 2, "id", "uint64" },
    { 3, "hostname", "string" },
    { 4, "peer_urls", "string", repeated = true },
    { 5, "client_urls", "string", repeated = true },
    { 6, "is_learner", "bool" },
  },
  { message = "machine.EtcdMembers",
    { 1, "metadata", "common.Metadata" },
    { 2, "legacy_members", "string", repeated = true },
    { 3, "members", "EtcdMember", repeated = true },
  },
  { message = "machine.EtcdMemberListResponse", { 1, "messages", "EtcdMembers", repeated = true } },

  -- machine.EtcdLeaveCluster, EtcdRemoveMemberByID, EtcdForfeitLeadership
  { message = "machine.EtcdLeaveClusterRequest" },
  { message = "machine.EtcdLeaveCluster", { 1, "metadata", "common.Metadata" } },
  { message = "machine.EtcdLeaveClusterResponse", { 1, "messages", "EtcdLeaveCluster", repeated = true } },
  { message = "machine.EtcdRemoveMemberByIDRequest", { 1, "member_id", "uint64" } },
  { message = "machine.EtcdRemoveMemberByID", { 1, "metadata", "common.Metadata" } },
  { message = "machine.EtcdRemoveMemberByIDResponse", { 1, "messages", "EtcdRemoveMemberByID", repeated = true } },
  { message = "machine.EtcdForfeitLeadershipRequest" },
  { message = "machine.EtcdForfeitLeadership",
    { 1, "metadata", "common.Metadata" },
    { 2, "member", "string" },
  },
  { message = "machine.EtcdForfeitLeadershipResponse", { 1, "messages", "EtcdForfeitLeadership", repeated = true } },

  -- machine.Upgrade
  { enum = "machine.UpgradeRequest.RebootMode", "DEFAULT", "POWERCYCLE" },
  { message = "machine.UpgradeRequest",
    { 1, "image", "string" },
    { 2, "preserve", "bool" },
    { 3, "stage", "bool" },
    { 4, "force", "bool" },
    { 5, "reboot_mode", "RebootMode" },
  },
  { message = "machine.Upgrade",
    { 1, "metadata", "common.Metadata" },
    { 2, "ack", "string" },
    { 3, "actor_id", "string" },
  },
  { message = "machine.UpgradeResponse", { 1, "messages", "Upgrade", repeated = true } },

  -- machine.Reset
  { enum = "machine.ResetRequest.WipeMode", "ALL", "SYSTEM_DISK", "USER_DISKS" },
  { message = "machine.ResetPartitionSpec",
    { 1, "label", "string" },
    { 2, "wipe", "bool" },
  },
  { message = "machine.ResetRequest",
    { 1, "graceful", "bool" },
    { 2, "reboot", "bool" },
    { 3, "system_partitions_to_wipe", "ResetPartitionSpec", repeated = true },
    { 4, "user_disks_to_wipe", "string", repeated = true },
    { 5, "mode", "WipeMode" },
  },
  { message = "machine.Reset",
    { 1, "metadata", "common.Metadata" },
    { 2, "actor_id", "string" },
  },
  { message = "machine.ResetResponse", { 1, "messages", "Reset", repeated = true } },

  -- machine.Reboot (FORCE is from Talos main; older servers reject it)
  { enum = "machine.RebootRequest.Mode", "DEFAULT", "POWERCYCLE", "FORCE" },
  { message = "machine.RebootRequest", { 1, "mode", "Mode" } },
  { message = "machine.Reboot",
    { 1, "metadata", "common.Metadata" },
    { 2, "actor_id", "string" },
  },
  { message = "machine.RebootResponse", { 1, "messages", "Reboot", repeated = true } },

  -- storage.Disks (api/storage/storage.proto)
  { enum = "storage.Disk.DiskType", "UNKNOWN", "SSD", "HDD", "NVME", "SD", "CD" },
  { message = "storage.Disk",
    { 1, "size", "uint64" },
    { 2, "model", "string" },
    { 3, "device_name", "string" },
    { 4, "name", "string" },
    { 5, "serial", "string" },
    { 6, "modalias", "string" },
    { 7, "uuid", "string" },
    { 8, "wwid", "string" },
    { 9, "type", "DiskType" },
    { 10, "bus_path", "string" },
    { 11, "system_disk", "bool" },
    { 12, "subsystem", "string" },
    { 13, "readonly", "bool" },
  },
  { message = "storage.Disks",
    { 1, "metadata", "common.Metadata" },
    { 2, "disks", "Disk", repeated = true },
  },
  { message = "storage.DisksResponse", { 1, "messages", "Disks", repeated = true } },

  -- COSI resources (cosi-project/specification proto/v1alpha1)
  { message = "cosi.resource.Metadata",
    { 1, "namespace", "string" },
    { 2, "type", "string" },
    { 3, "id", "string" },
    { 4, "version", "string" },
    { 5, "owner", "string" },
    { 6, "phase", "string" },
    { 7, "created", "google.protobuf.Timestamp" },
    { 8, "updated", "google.protobuf.Timestamp" },
    { 9, "finalizers", "string", repeated = true },
    { 10, "labels", "map<string, string>" },
    { 11, "annotations", "map<string, string>" },
  },
  { message = "cosi.resource.Spec",
    { 1, "proto_spec", "bytes" },
    { 2, "yaml_spec", "string" },
  },
  { message = "cosi.resource.Resource",
    { 1, "metadata", "Metadata" },
    { 2, "spec", "Spec" },
  },
  { message = "cosi.resource.GetOptions" },
  { message = "cosi.resource.GetRequest",
    { 1, "namespace", "string" },
    { 2, "type", "string" },
    { 3, "id", "string" },
    { 4, "options", "GetOptions" },
  },
  { message = "cosi.resource.GetResponse", { 1, "resource", "Resource" } },
  { message = "cosi.resource.ListOptions" },
  { message = "cosi.resource.ListRequest",
    { 1, "namespace", "string" },
    { 2, "type", "string" },
    { 3, "options", "ListOptions" },
  },
  { message = "cosi.resource.ListResponse", { 1, "resource", "Resource" } },
  -- CREATED..DESTROYED are in every version; BOOTSTRAPPED and ERRORED come
  -- with the newer runtime (unknown numbers decode as numbers anyway)
  { enum = "cosi.resource.EventType",
    "CREATED", "UPDATED", "DESTROYED", "BOOTSTRAPPED", "ERRORED" },
  { message = "cosi.resource.WatchOptions", { 1, "bootstrap_contents", "bool" } },
  { message = "cosi.resource.WatchRequest",
    { 1, "namespace", "string" },
    { 2, "type", "string" },
    { 3, "id", "string", presence = true },
    { 4, "options", "WatchOptions" },
    { 5, "api_version", "int32" },
  },
  { message = "cosi.resource.Event",
    { 1, "resource", "Resource" },
    { 2, "event_type", "EventType" },
    { 3, "old", "Resource" },
    { 4, "error", "string" },
  },
  { message = "cosi.resource.WatchResponse", { 1, "event", "Event", repeated = true } },
}

M.schema = pb.schema(M.decls)

local function method(path, request, response, stream)
  return { path = path, request = request, response = response, stream = stream or false }
end

local MS, EMPTY = "/machine.MachineService/", "google.protobuf.Empty"

M.methods = {
  ApplyConfiguration = method(MS .. "ApplyConfiguration", "machine.ApplyConfigurationRequest",
    "machine.ApplyConfigurationResponse"),
  Bootstrap = method(MS .. "Bootstrap", "machine.BootstrapRequest", "machine.BootstrapResponse"),
  Kubeconfig = method(MS .. "Kubeconfig", EMPTY, "common.Data", true),
  Version = method(MS .. "Version", EMPTY, "machine.VersionResponse"),
  ServiceList = method(MS .. "ServiceList", EMPTY, "machine.ServiceListResponse"),
  EtcdMemberList = method(MS .. "EtcdMemberList", "machine.EtcdMemberListRequest",
    "machine.EtcdMemberListResponse"),
  EtcdLeaveCluster = method(MS .. "EtcdLeaveCluster", "machine.EtcdLeaveClusterRequest",
    "machine.EtcdLeaveClusterResponse"),
  EtcdRemoveMemberByID = method(MS .. "EtcdRemoveMemberByID", "machine.EtcdRemoveMemberByIDRequest",
    "machine.EtcdRemoveMemberByIDResponse"),
  EtcdForfeitLeadership = method(MS .. "EtcdForfeitLeadership", "machine.EtcdForfeitLeadershipRequest",
    "machine.EtcdForfeitLeadershipResponse"),
  Upgrade = method(MS .. "Upgrade", "machine.UpgradeRequest", "machine.UpgradeResponse"),
  Reset = method(MS .. "Reset", "machine.ResetRequest", "machine.ResetResponse"),
  Reboot = method(MS .. "Reboot", "machine.RebootRequest", "machine.RebootResponse"),
  Disks = method("/storage.StorageService/Disks", EMPTY, "storage.DisksResponse"),
  Get = method("/cosi.resource.State/Get", "cosi.resource.GetRequest", "cosi.resource.GetResponse"),
  List = method("/cosi.resource.State/List", "cosi.resource.ListRequest",
    "cosi.resource.ListResponse", true),
  Watch = method("/cosi.resource.State/Watch", "cosi.resource.WatchRequest",
    "cosi.resource.WatchResponse", true),
}

return M
