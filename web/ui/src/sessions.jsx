// The user's sessions: where they are signed in, and a way to end any.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { confirmDialog, Spinner, toast, toastError, useRefresh } from './ui.jsx';
import { fmtAgo, fmtTime } from './util.js';

function agentName(ua) {
  if (!ua) return 'Unknown client';
  const b = /Edg\//.test(ua) ? 'Edge' : /Firefox\//.test(ua) ? 'Firefox' : /Chrom(e|ium)\//.test(ua) ? 'Chromium' : /Safari\//.test(ua) ? 'Safari' : '';
  const os = /Android/.test(ua) ? 'Android' : /iPhone|iPad/.test(ua) ? 'iOS' : /Windows/.test(ua) ? 'Windows' : /Mac OS/.test(ua) ? 'macOS' : /Linux/.test(ua) ? 'Linux' : '';
  return b || os ? [b, os].filter(Boolean).join(' on ') : ua.slice(0, 60);
}

export function SessionsPage() {
  const [list, setList] = useState(null);
  const [error, setError] = useState('');
  const load = () => api.sessions().then((r) => {
    setList(r.sessions || []);
    setError('');
  }, (e) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  useRefresh(load);
  const revoke = async (s) => {
    const msg = s.current ? 'This signs you out here.' : `The session from ${s.remote || 'an unknown address'} will be signed out at once.`;
    if (!(await confirmDialog('End this session?', msg, 'Sign it out', true))) return;
    try {
      await api.revokeSession(s.id);
      toast('Session ended.', { kind: 'ok' });
      if (!s.current) load();
      else location.reload();
    } catch (e) {
      toastError('Cannot end the session', e);
    }
  };
  return (
    <div class="page" data-testid="sessions-page">
      <h1>Sessions</h1>
      <p class="muted">Everywhere you are signed in. End any session you do not recognise, then change your password.</p>
      {error && <p class="form-error">{error}</p>}
      {!list && !error && <Spinner />}
      {list && (
        <table class="table">
          <thead><tr><th>Client</th><th>Address</th><th class="hide-narrow">Signed in</th><th>Last seen</th><th /></tr></thead>
          <tbody>
            {list.map((s) => (
              <tr key={s.id} data-testid="session-row" data-current={s.current ? '1' : '0'}>
                <td title={s.agent}>{agentName(s.agent)} {s.current && <span class="badge badge-ok">this one</span>}</td>
                <td class="mono">{s.remote}</td>
                <td class="hide-narrow">{fmtTime(s.created)}</td>
                <td>{fmtAgo(s.last_seen)}</td>
                <td class="actions"><button class="btn btn-small btn-danger-soft" data-testid="session-revoke" onClick={() => revoke(s)}>{s.current ? 'Sign out' : 'Revoke'}</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
