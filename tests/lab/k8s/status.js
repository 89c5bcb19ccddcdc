// metav1.Status error bodies the way the apiserver builds them
// (k8s.io/apimachinery/pkg/api/errors): the same codes, reasons, messages
// and details, so clients that branch on reason or code behave as against a
// real cluster.  Handlers throw an ApiError; the server writes err.status.
'use strict';

class ApiError extends Error {
  constructor(status) {
    super(status.message);
    this.status = status;
    this.code = status.code;
  }
}

/** A Status object with the apiserver's field order. */
function status(code, reason, message, details, extra = {}) {
  const s = { kind: 'Status', apiVersion: 'v1', metadata: extra.metadata || {}, status: 'Failure', message };
  if (reason !== undefined) s.reason = reason;
  if (details !== undefined) s.details = details;
  s.code = code;
  return s;
}

function details(gr, name, more = {}) {
  const d = {};
  if (name) d.name = name;
  if (gr && gr.group) d.group = gr.group;
  if (gr && gr.resource) d.kind = gr.resource; // "Yes we set Kind field to resource."
  return Object.assign(d, more);
}

/** "configmaps" / "deployments.apps" (GroupResource.String()). */
const grString = (gr) => (gr.group ? `${gr.resource}.${gr.group}` : gr.resource);
/** "ConfigMap" / "Deployment.apps" (GroupKind.String()). */
const gkString = (gk) => (gk.group ? `${gk.kind}.${gk.group}` : gk.kind);
const q = (s) => JSON.stringify(String(s));

const E = {
  notFound: (gr, name) => new ApiError(status(404, 'NotFound', `${grString(gr)} ${q(name)} not found`, details(gr, name))),
  alreadyExists: (gr, name) => new ApiError(status(409, 'AlreadyExists', `${grString(gr)} ${q(name)} already exists`, details(gr, name))),
  conflict: (gr, name, why) => new ApiError(status(409, 'Conflict',
    `Operation cannot be fulfilled on ${grString(gr)} ${q(name)}: ${why}`, details(gr, name))),
  applyConflict: (message, causes) => new ApiError(status(409, 'Conflict', message, { causes })),
  badRequest: (message) => new ApiError(status(400, 'BadRequest', message)),
  unauthorized: () => new ApiError(status(401, 'Unauthorized', 'Unauthorized')),
  forbidden: (gr, name, why, causes) => {
    let message;
    if (!gr || !gr.resource) message = `forbidden: ${why}`;
    else if (!name) message = `${grString(gr)} is forbidden: ${why}`;
    else message = `${grString(gr)} ${q(name)} is forbidden: ${why}`;
    const d = details(gr, name);
    if (causes) d.causes = causes;
    return new ApiError(status(403, 'Forbidden', message, d));
  },
  /** errs: [{type: 'FieldValueRequired', field, detail, value?}] (field.Error). */
  invalid: (gk, name, errs) => {
    const causes = errs.map((e) => ({ reason: e.type, message: fieldErrorBody(e), field: e.field }));
    const texts = errs.map((e) => `${e.field}: ${fieldErrorBody(e)}`);
    const agg = texts.length === 1 ? texts[0] : `[${texts.join(', ')}]`;
    const d = {};
    if (name) d.name = name;
    if (gk.group) d.group = gk.group;
    d.kind = gk.kind;
    d.causes = causes;
    return new ApiError(status(422, 'Invalid', `${gkString(gk)} ${q(name || '')} is invalid: ${agg}`, d));
  },
  unsupportedMediaType: (accepted) => new ApiError(status(415, 'UnsupportedMediaType',
    `the body of the request was in an unknown format - accepted media types include: ${accepted.join(', ')}`)),
  notAcceptable: (accepted) => new ApiError(status(406, 'NotAcceptable',
    `only the following media types are accepted: ${accepted.join(', ')}`)),
  methodNotSupported: (gr, action) => new ApiError(status(405, 'MethodNotAllowed',
    `${action} is not supported on resources of kind ${q(grString(gr))}`, details(gr, ''))),
  methodNotSupportedMsg: (gr, message) => new ApiError(status(405, 'MethodNotAllowed', message, details(gr, ''))),
  /** go-restful's unknown route inside a served group version. */
  genericNotFound: () => new ApiError(status(404, 'NotFound', 'the server could not find the requested resource', {})),
  expired: (message, extra) => new ApiError(status(410, 'Expired', message, undefined, extra)),
  internal: (message) => new ApiError(status(500, 'InternalError', `Internal error occurred: ${message}`, { causes: [{ message }] })),
  tooLarge: (message) => new ApiError(status(413, 'RequestEntityTooLarge', `Request entity too large: ${message}`)),
  /** A plain Go error that reached the apiserver's error writer: 500 with an empty reason. */
  plain: (message) => new ApiError(status(500, undefined, message)),
  unprocessable: (message) => new ApiError(status(422, 'Invalid', message, {})),
};

const TYPE_TEXT = {
  FieldValueRequired: 'Required value', FieldValueInvalid: 'Invalid value', FieldValueNotSupported: 'Unsupported value',
  FieldValueForbidden: 'Forbidden', FieldValueDuplicate: 'Duplicate value', FieldValueTooLong: 'Too long',
};

/** field.Error.ErrorBody(): "Required value: is required" / `Invalid value: "x": msg`. */
function fieldErrorBody(e) {
  let s = TYPE_TEXT[e.type] || e.type;
  const withValue = ['FieldValueInvalid', 'FieldValueNotSupported', 'FieldValueDuplicate'].includes(e.type);
  if (withValue) s += `: ${typeof e.value === 'string' ? q(e.value) : JSON.stringify(e.value)}`;
  if (e.detail) s += `: ${e.detail}`;
  return s;
}

/** The Status a fault rule answers: its status code with the apiserver's reason for it. */
function faultStatus(code, message) {
  const reasons = {
    400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 405: 'MethodNotAllowed',
    406: 'NotAcceptable', 409: 'Conflict', 410: 'Expired', 413: 'RequestEntityTooLarge', 415: 'UnsupportedMediaType',
    422: 'Invalid', 429: 'TooManyRequests', 500: 'InternalError', 503: 'ServiceUnavailable', 504: 'Timeout',
  };
  const defaults = {
    429: 'Too many requests, please try again later.', 500: 'Internal error occurred: injected fault',
    503: 'the server is currently unable to handle the request', 504: 'Timeout: request did not complete within the allotted timeout',
  };
  return status(code, reasons[code] || (code >= 500 ? 'InternalError' : 'Unknown'),
    message || defaults[code] || `injected fault (${code})`, code === 429 ? { retryAfterSeconds: 1 } : {});
}

module.exports = { ApiError, E, status, faultStatus, grString, gkString };
