/*
** tlr_err.h: the registry of runtime error codes (the third value of a
** `nil, msg, code` failure and the `code` field of recipe error objects).
** Append-only: a code keeps its meaning forever; a retired code stays listed
** as "(retired)".  docs/errors.md mirrors this list (a test checks that).
*/
TLR_ERR(EINVAL,     "invalid input: a malformed document, bad value or bad site file")
TLR_ERR(EUSAGE,     "the command line is wrong")
TLR_ERR(ETIMEDOUT,  "an operation or wait ran out of time")
TLR_ERR(ECANCELED,  "the task was cancelled")
TLR_ERR(ECONNREFUSED, "the peer refused the connection")
TLR_ERR(ECONNRESET, "the connection dropped before a complete reply")
TLR_ERR(ERESOLVE,   "a host name could not be resolved")
TLR_ERR(ETLS,       "the TLS handshake or certificate verification failed")
TLR_ERR(EPIN,       "the peer's certificate does not match the pinned fingerprint")
TLR_ERR(ETOOBIG,    "a reply exceeded the configured size limit")
TLR_ERR(EPROTO,     "the peer sent something that does not parse as its protocol")
TLR_ERR(ETRANSPORT, "any other transport failure (see the message)")
TLR_ERR(EIO,        "a local file or device operation failed")
TLR_ERR(ENOENT,     "a local file does not exist")
TLR_ERR(EEXIST,     "a local file exists already")
TLR_ERR(EPERM,      "a local file has unsafe permissions or access was denied")
TLR_ERR(ELOCKED,    "another process holds the lock")
TLR_ERR(ECRYPTO,    "a key, certificate or signature operation failed")
TLR_ERR(EAPI,       "a remote API answered with an error")
TLR_ERR(EAUTH,      "the remote service rejected the credentials")
TLR_ERR(EFORBIDDEN, "the credentials lack the permission for this call")
TLR_ERR(ENOTFOUND,  "the remote object does not exist")
TLR_ERR(ELOCKTIMEOUT, "the remote object stayed locked by another operation")
TLR_ERR(EUNREACHABLE, "a proxying server could not reach the node that owns the object")
TLR_ERR(ETASK,      "a remote task ran and failed")
