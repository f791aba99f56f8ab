// Share links: the dialog that creates one (password and expiry optional)
// and the page that lists the user's links, copies and revokes them.
import { Icon } from './icons.jsx';
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { ask, confirmDialog, Spinner, toast, toastError, useRefresh } from './ui.jsx';
import { filesHash, fmtTime, parent } from './util.js';

const EXPIRY = [
  ['', 'Never'],
  ['1', '1 day'],
  ['7', '7 days'],
  ['30', '30 days'],
  ['custom', 'On a date…'],
];

function ShareForm({ form }) {
  const [exp, setExp] = useState('');
  const [pw, setPw] = useState('');
  const [date, setDate] = useState('');
  form.exp = exp;
  form.pw = pw;
  form.date = date;
  return (
    <div class="share-form">
      <label class="field">
        <span>Password (optional)</span>
        <input type="password" autocomplete="new-password" data-testid="share-password" value={pw} placeholder="Anyone with the link can open it" onInput={(e) => setPw(e.currentTarget.value)} />
      </label>
      <label class="field">
        <span>Expires</span>
        <select data-testid="share-expiry" value={exp} onChange={(e) => setExp(e.currentTarget.value)}>
          {EXPIRY.map(([v, l]) => <option key={v} value={v}>{l}</option>)}
        </select>
      </label>
      {exp === 'custom' && (
        <label class="field">
          <span>Expiry date</span>
          <input type="date" data-testid="share-date" value={date} onInput={(e) => setDate(e.currentTarget.value)} />
        </label>
      )}
    </div>
  );
}

export function linkOf(share) {
  return location.origin + share.url;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast('Link copied.', { kind: 'ok', timeout: 2500 });
  } catch {
    toast('Copying was refused by the browser: select the link and copy it by hand.', { kind: 'error' });
  }
}

/** shareDialog creates a link to entry ({path, name, kind}) and shows it. */
export async function shareDialog(entry) {
  const form = {};
  const ok = await ask({
    title: `Share ${entry.name}`, testid: 'share-dialog',
    message: entry.kind === 'dir' ? 'People with the link can browse and download this folder.' : 'People with the link can view and download this file.',
    body: <ShareForm form={form} />,
    buttons: [{ label: 'Cancel', value: null }, { label: 'Create link', value: 'ok', kind: 'primary', testid: 'share-create' }],
  });
  if (ok !== 'ok') return;
  let expires;
  if (form.exp === 'custom') {
    if (!form.date) return toast('Pick an expiry date, or choose Never.', { kind: 'error' });
    expires = new Date(form.date + 'T23:59:59').toISOString();
    if (new Date(expires) <= new Date()) return toast('The expiry date is in the past: pick a later one.', { kind: 'error' });
  } else if (form.exp) {
    expires = new Date(Date.now() + parseInt(form.exp, 10) * 86400e3).toISOString();
  }
  let share;
  try {
    share = await api.createShare(entry.path, form.pw, expires);
  } catch (e) {
    return toastError('Cannot create the link', e);
  }
  const link = linkOf(share);
  await ask({
    title: 'Link created', testid: 'share-created',
    message: `${share.has_password ? 'It asks for the password. ' : ''}${share.expires ? `It works until ${fmtTime(share.expires)}.` : 'It works until you revoke it (Shares page).'}`,
    body: (
      <div class="share-link">
        <input readOnly value={link} data-testid="share-link" onFocus={(e) => e.currentTarget.select()} />
        <button type="button" class="btn" data-testid="share-copy" onClick={() => copyText(link)}>Copy</button>
      </div>
    ),
    buttons: [{ label: 'Done', value: true, kind: 'primary' }],
  });
}

export function SharesPage() {
  const [list, setList] = useState(null);
  const [error, setError] = useState('');
  const load = () => api.shares().then((r) => {
    setList(r.shares || []);
    setError('');
  }, (e) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  useRefresh(load);
  const revoke = async (s) => {
    if (!(await confirmDialog('Revoke the link?', `${linkOf(s)} will stop working for everyone. This cannot be undone.`, 'Revoke', true))) return;
    try {
      await api.revokeShare(s.id);
      toast('Link revoked.', { kind: 'ok' });
      load();
    } catch (e) {
      toastError('Cannot revoke', e);
    }
  };
  return (
    <div class="page" data-testid="shares-page">
      <h1>Share links</h1>
      <p class="muted">Create a link from the file browser (select a file or folder, then Share).</p>
      {error && <p class="form-error">{error}</p>}
      {!list && !error && <Spinner />}
      {list && !list.length && <div class="empty" data-testid="empty">No share links yet.</div>}
      {list && list.length > 0 && (
        <table class="table">
          <thead><tr><th>Shared</th><th class="hide-narrow">Created</th><th>Expires</th><th class="hide-narrow">Password</th><th /></tr></thead>
          <tbody>
            {list.map((s) => {
              const expired = s.expires && new Date(s.expires) < new Date();
              return (
                <tr key={s.id} data-testid="share-row" data-path={s.path} data-id={s.id}>
                  <td>
                    <a href={filesHash(s.kind === 'dir' ? s.path : parent(s.path))}><Icon name={s.kind === 'dir' ? 'folder' : 'file'} /> {s.path}</a>
                    <div class="muted small mono">{s.url}</div>
                  </td>
                  <td class="hide-narrow">{fmtTime(s.created)}</td>
                  <td class={expired ? 'bad' : ''}>{s.expires ? `${expired ? 'expired ' : ''}${fmtTime(s.expires)}` : 'never'}</td>
                  <td class="hide-narrow">{s.has_password ? 'yes' : 'no'}</td>
                  <td class="actions">
                    <button class="btn btn-small" data-testid="share-copy" onClick={() => copyText(linkOf(s))}>Copy link</button>
                    <a class="btn btn-small" href={s.url} target="_blank" rel="noopener" data-testid="share-open">Open</a>
                    <button class="btn btn-small btn-danger-soft" data-testid="share-revoke" onClick={() => revoke(s)}>Revoke</button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
