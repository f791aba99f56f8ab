// The JSON API of docs/web.md: one fetch wrapper that adds the CSRF header
// to every non-GET request and turns error answers into ApiError with the
// server's message (which says what to do).

let csrf = '';

/** setCSRF remembers the session's token (from login or /api/auth/me). */
export function setCSRF(token) {
  csrf = token || '';
}

/** getCSRF is the current token (tus requests add it themselves). */
export function getCSRF() {
  return csrf;
}

export class ApiError extends Error {
  constructor(status, message, body, retryAfter) {
    super(message);
    this.status = status;
    this.body = body || {};
    this.retryAfter = retryAfter;
  }
}

/** onUnauthorized is called when a request answers 401 (session gone). */
let unauthorized = () => {};
export function onUnauthorized(fn) {
  unauthorized = fn;
}

function describe(status) {
  switch (status) {
    case 0: return 'The server cannot be reached: check your connection and try again.';
    case 401: return 'Your session ended: sign in again.';
    case 403: return 'Refused by the server: reload the page and try again.';
    case 404: return 'Not found: it may have been moved or deleted; reload the folder.';
    case 409: return 'That name is taken: choose another one.';
    case 413: return 'Too large for the server.';
    case 429: return 'Too many attempts: wait and try again.';
    default: return `The server failed (${status}): try again in a moment.`;
  }
}

/**
 * request sends one API call. opts: {method, json, body, headers, raw,
 * quiet401}. It returns parsed JSON, text (raw: the Response) or null for
 * 204, and throws ApiError.
 */
export async function request(url, opts = {}) {
  const method = opts.method || 'GET';
  const headers = { ...(opts.headers || {}) };
  let body = opts.body;
  if (opts.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.json);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let res;
  try {
    res = await fetch(url, { method, headers, body, credentials: 'same-origin', signal: opts.signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, describe(0));
  }
  if (!res.ok) {
    let data = {};
    try {
      const t = await res.text();
      data = t ? JSON.parse(t) : {};
    } catch {
      data = {};
    }
    const ra = res.headers.get('Retry-After');
    if (res.status === 401 && !opts.quiet401) unauthorized();
    throw new ApiError(res.status, data.error || describe(res.status), data, ra ? parseInt(ra, 10) : undefined);
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('application/json')) return res.json();
  return res.text();
}

const q = (p) => encodeURIComponent(p);

export const api = {
  login: (user, password) => request('/api/auth/login', { method: 'POST', json: { user, password }, quiet401: true }),
  logout: () => request('/api/auth/logout', { method: 'POST' }),
  me: () => request('/api/auth/me', { quiet401: true }),
  sessions: () => request('/api/auth/sessions'),
  revokeSession: (id) => request(`/api/auth/sessions/${q(id)}`, { method: 'DELETE' }),

  list: (path, signal) => request(`/api/files/list?path=${q(path)}`, { signal }),
  stat: (path) => request(`/api/files/stat?path=${q(path)}`),
  search: (path, term, signal) => request(`/api/files/search?path=${q(path)}&q=${q(term)}&limit=500`, { signal }),
  mkdir: (path) => request('/api/files/mkdir', { method: 'POST', json: { path } }),
  newFile: (path) => request('/api/files/new', { method: 'POST', json: { path } }),
  move: (from, to, overwrite = false) => request('/api/files/move', { method: 'POST', json: { from, to, overwrite } }),
  copy: (from, to, overwrite = false) => request('/api/files/copy', { method: 'POST', json: { from, to, overwrite } }),
  remove: (paths) => request('/api/files/delete', { method: 'POST', json: { paths } }),
  trash: () => request('/api/files/trash'),
  restore: (ids) => request('/api/files/trash/restore', { method: 'POST', json: { ids } }),
  emptyTrash: (ids) => request('/api/files/trash/empty', { method: 'POST', json: { ids: ids || [] } }),

  /** getText returns {text, etag}. */
  async getText(path) {
    const res = await request(`/api/files/text?path=${q(path)}`, { raw: true });
    return { text: await res.text(), etag: res.headers.get('ETag') || '' };
  },
  /** putText saves; etag '' creates (If-None-Match: *). Returns {etag, entry}. */
  putText(path, text, etag) {
    const headers = { 'Content-Type': 'text/plain; charset=utf-8' };
    if (etag) headers['If-Match'] = etag;
    else headers['If-None-Match'] = '*';
    return request(`/api/files/text?path=${q(path)}`, { method: 'PUT', body: text, headers });
  },

  shares: () => request('/api/shares'),
  createShare: (path, password, expires) => {
    const body = { path };
    if (password) body.password = password;
    if (expires) body.expires = expires;
    return request('/api/shares', { method: 'POST', json: body });
  },
  revokeShare: (id) => request(`/api/shares/${q(id)}`, { method: 'DELETE' }),

  health: () => request('/api/health'),

  pub: {
    info: (id) => request(`/api/public/${q(id)}`, { quiet401: true }),
    unlock: (id, password) => request(`/api/public/${q(id)}/unlock`, { method: 'POST', json: { password }, quiet401: true }),
    list: (id, path) => request(`/api/public/${q(id)}/list?path=${q(path)}`, { quiet401: true }),
  },
};

/** URLs for the browser to load directly (downloads, media, images). */
export const urls = {
  download: (path, inline) => `/api/files/download?path=${q(path)}${inline ? '&inline=1' : ''}`,
  zip: (paths) => `/api/files/zip?${paths.map((p) => 'path=' + q(p)).join('&')}`,
  thumb: (path, size = 256) => `/api/files/thumb?path=${q(path)}&size=${size}`,
  pubDownload: (id, path, inline) => {
    const args = [];
    if (path) args.push('path=' + q(path));
    if (inline) args.push('inline=1');
    return `/api/public/${q(id)}/download${args.length ? '?' + args.join('&') : ''}`;
  },
};
