// Authentication and permissions of the Proxmox fake: API tokens
// (PVEAPIToken=USER@REALM!ID=SECRET, no CSRF), tickets from POST
// /access/ticket (PVEAuthCookie + CSRFPreventionToken on writes, 2 h
// lifetime), ACLs with roles, and the schema's permission checks
// (PVE::RPCEnvironment::check_api2_permissions).
'use strict';
const crypto = require('crypto');

class AuthError extends Error {} // -> 401 after the failed-auth delay

const ALL = '*';
const ROLES = {
  Administrator: [ALL],
  PVEAuditor: ['Datastore.Audit', 'Mapping.Audit', 'Pool.Audit', 'SDN.Audit', 'Sys.Audit', 'VM.Audit',
    'VM.GuestAgent.Audit'],
  PVEVMAdmin: ['VM.Allocate', 'VM.Audit', 'VM.Clone', 'VM.Config.CDROM', 'VM.Config.CPU',
    'VM.Config.Cloudinit', 'VM.Config.Disk', 'VM.Config.HWType', 'VM.Config.Memory', 'VM.Config.Network',
    'VM.Config.Options', 'VM.Console', 'VM.Migrate', 'VM.PowerMgmt', 'VM.Snapshot', 'VM.Backup',
    'VM.GuestAgent.Audit', 'VM.GuestAgent.Unrestricted', 'Datastore.AllocateSpace', 'Datastore.Audit',
    'SDN.Use'],
  NoAccess: [],
};

function unescapeSafe(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

function hexTime(t) { return Math.floor(t).toString(16).toUpperCase().padStart(8, '0'); }

class Auth {
  /** @param {{password: string, secrets: object, lifetime: () => number}} opts */
  constructor(opts) {
    this.key = crypto.randomBytes(32);
    this.lifetime = opts.lifetime;
    this.users = {
      'root@pam': { password: opts.password, acl: [{ path: '/', role: 'Administrator' }] },
      // an auditor; its privilege-separated tokens get the intersection with their own ACLs
      'tlr@pve': { password: opts.password, acl: [{ path: '/', role: 'PVEAuditor' }] },
    };
    this.tokens = {
      // a token of root without privilege separation: root's rights
      'root@pam!tlr': { secret: opts.secrets.root, privsep: 0, acl: [] },
      // privilege-separated tokens of tlr@pve: none at all / read-only
      'tlr@pve!noperm': { secret: opts.secrets.noperm, privsep: 1, acl: [] },
      'tlr@pve!audit': { secret: opts.secrets.audit, privsep: 1, acl: [{ path: '/', role: 'PVEAuditor' }] },
    };
  }

  sign(text) { return crypto.createHmac('sha256', this.key).update(text).digest('base64').replace(/=+$/, ''); }

  /** POST /access/ticket: a new ticket for a password or a still valid ticket. */
  login(username, password, realm) {
    let user = username;
    if (realm && !user.includes('@')) user = `${user}@${realm}`;
    const u = this.users[user];
    let ok = !!u && password === u.password;
    if (!ok && u && typeof password === 'string' && password.startsWith('PVE:')) {
      try { ok = this.verifyTicket(password).userid === user; } catch (_) { ok = false; }
    }
    if (!ok) throw new AuthError('authentication failure');
    const now = Date.now() / 1000;
    const plain = `PVE:${user}:${hexTime(now)}`;
    const ticket = `${plain}::${this.sign(plain)}`;
    const csrf = `${hexTime(now)}:${this.sign(`${hexTime(now)}:${user}`)}`;
    return { ticket, CSRFPreventionToken: csrf, username: user };
  }

  verifyTicket(ticket) {
    const m = /^(PVE:([^:]+):([0-9A-F]{8}))::(.+)$/.exec(ticket || '');
    if (!m || m[4] !== this.sign(m[1])) throw new AuthError('permission denied - invalid PVE ticket');
    const age = Date.now() / 1000 - parseInt(m[3], 16);
    if (age < -300 || age > this.lifetime()) throw new AuthError('permission denied - invalid PVE ticket');
    if (!this.users[m[2]]) throw new AuthError('permission denied - invalid PVE ticket');
    return { userid: m[2], age };
  }

  verifyCsrf(userid, token) {
    const m = /^([0-9A-F]{8}):(.+)$/.exec(token || '');
    const age = m ? Date.now() / 1000 - parseInt(m[1], 16) : Infinity;
    if (!m || m[2] !== this.sign(`${m[1]}:${userid}`) || age > this.lifetime() || age < -300) {
      throw new AuthError('Permission denied - invalid csrf token');
    }
  }

  /** "root@pam!tlr=SECRET" (already extracted from the header). */
  verifyToken(apiToken) {
    const m = /^(.+?)[=\s](.+)$/.exec(apiToken);
    if (!m) throw new AuthError('invalid token value!');
    const t = this.tokens[m[1]];
    const digest = (x) => crypto.createHash('sha256').update(x).digest();
    if (!t || !crypto.timingSafeEqual(digest(t.secret), digest(m[2]))) throw new AuthError('invalid token value!');
    const [userid, tokenid] = m[1].split('!');
    return { userid, tokenid, tokenFull: m[1] };
  }

  /**
   * Authenticates a request like PVE::HTTPServer::auth_handler.  Returns
   * {kind: 'token'|'ticket'|'none', userid, tokenid?, tokenFull?}; throws AuthError.
   */
  authenticate(req, method, relUri) {
    const h = req.headers;
    const authz = h.authorization || '';
    const tm = /(?:^|\s)PVEAPIToken(?:=| )([^;]*)/.exec(authz);
    const apiToken = tm ? unescapeSafe(tm[1]) : null;
    let ticket = null;
    const cm = /(?:^|\s|;)PVEAuthCookie=([^;]*)/.exec(h.cookie || '');
    if (cm) ticket = unescapeSafe(cm[1]);
    const am = /(?:^|\s)PVEAuthCookie=([^;\s]*)/.exec(authz);
    if (!ticket && am) ticket = unescapeSafe(am[1]);
    const open = (relUri === '/access/domains' && method === 'GET')
      || (relUri === '/access/ticket' && (method === 'GET' || method === 'POST'));
    if (open) return { kind: 'none', userid: null, apiToken: !!apiToken };
    if (apiToken) return { kind: 'token', ...this.verifyToken(apiToken), apiToken: true };
    if (!ticket) throw new AuthError('No ticket');
    const t = this.verifyTicket(ticket);
    if (method !== 'GET') this.verifyCsrf(t.userid, h.csrfpreventiontoken);
    return { kind: 'ticket', userid: t.userid };
  }

  /** The user string of UPIDs and the request log: user@realm or user@realm!token. */
  static who(auth) { return auth.tokenFull || auth.userid || ''; }

  privsAt(auth, aclPath) {
    const collect = (acl) => {
      const out = new Set();
      for (const e of acl) {
        const p = e.path;
        if (p === '/' || aclPath === p || aclPath.startsWith(`${p}/`)) for (const x of ROLES[e.role] || []) out.add(x);
      }
      return out;
    };
    const user = this.users[auth.userid];
    const up = collect(user ? user.acl : []);
    if (auth.kind !== 'token') return up;
    const tok = this.tokens[auth.tokenFull];
    if (!tok.privsep) return up;
    const tp = collect(tok.acl);
    if (up.has(ALL)) return tp;
    if (tp.has(ALL)) return up;
    return new Set([...tp].filter((x) => up.has(x)));
  }

  has(auth, aclPath, priv) {
    const s = this.privsAt(auth, aclPath);
    return s.has(ALL) || s.has(priv);
  }

  /** rpcenv->check: throws {status 403} unless the privileges are there. */
  check(auth, aclPath, privs, any = false) {
    const ok = any ? privs.some((p) => this.has(auth, aclPath, p)) : privs.every((p) => this.has(auth, aclPath, p));
    if (!ok) {
      const err = new Error(`Permission check failed (${aclPath}, ${any ? privs.join('|') : privs.find((p) => !this.has(auth, aclPath, p))})`);
      err.status = 403;
      throw err;
    }
  }

  /** Evaluates the schema's `permissions` ({check, user}) for a request. */
  checkApi(auth, perms, params) {
    if (auth.userid === 'root@pam' && auth.kind !== 'token') return;
    if (!perms) { this.check(auth, '/', ['Sys.Root']); return; }
    if (perms.user === 'world' || perms.user === 'all') return;
    if (!perms.check) return;
    let firstFail = null;
    const evalCheck = (c) => {
      const [kind, ...rest] = c;
      if (kind === 'and') return rest.every(evalCheck);
      if (kind === 'or') return rest.some(evalCheck);
      if (kind === 'perm') {
        const [tmpl, privs, ...opts] = rest;
        const o = {};
        for (let i = 0; i < opts.length; i += 2) o[opts[i]] = opts[i + 1];
        if (o.require_param && params[o.require_param] === undefined) return false;
        const aclPath = tmpl.replace(/\{(\w+)\}/g, (_, k) => (params[k] === undefined ? '' : String(params[k])));
        try { this.check(auth, aclPath, privs, !!o.any); return true; } catch (err) { firstFail = firstFail || err; return false; }
      }
      // userid-param, userid-group, perm-modify: user administration, granted to admins only
      try { this.check(auth, '/access', ['User.Modify']); return true; } catch (err) { firstFail = firstFail || err; return false; }
    };
    if (!evalCheck(perms.check)) {
      const err = new Error(firstFail ? firstFail.message : 'Permission check failed');
      err.status = 403;
      throw err;
    }
  }
}

module.exports = { Auth, AuthError, ROLES };
