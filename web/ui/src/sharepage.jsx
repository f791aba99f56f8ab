// The public share page (/s/<id>): no session. It asks for the password
// when the link has one, then previews the shared file, or lists the shared
// folder read-only with previews and downloads.
import { Icon } from './icons.jsx';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, urls } from './api.js';
import { Hosts, Spinner, ThemeToggle } from './ui.jsx';
import { MediaBody } from './viewer.jsx';
import { download } from './browser.jsx';
import { fmtSize, fmtTime, iconOf, join, viewerOf } from './util.js';

const GONE = 'This link does not exist, has expired or was revoked. Ask the person who sent it for a new one.';

export function SharePage({ id }) {
  const [info, setInfo] = useState(null);
  const [error, setError] = useState('');
  const [locked, setLocked] = useState(false);
  useEffect(() => {
    (async () => {
      let i;
      try {
        i = await api.pub.info(id);
      } catch (e) {
        setError(e.status === 404 ? GONE : e.message);
        return;
      }
      // The unlock cookie is not readable here, and probing with a request
      // would log a 401 in the console: ask again after a reload.
      setLocked(!!i.needs_password);
      setInfo(i);
    })();
  }, [id]);
  return (
    <div class="shell share-shell">
      <header class="topbar">
        <span class="brand"><img src="/assets/favicon.svg" alt="" width="24" height="24" /><span>qsfs</span></span>
        <span class="muted hide-narrow">Shared with you</span>
        <div class="topbar-right"><ThemeToggle /></div>
      </header>
      <main class="main">
        {error && <div class="empty" data-testid="share-error"><p>{error}</p></div>}
        {!error && !info && <Spinner />}
        {info && locked && <Unlock id={id} onOpen={async () => {
          // Locked, the link tells nothing about what it shares: ask again.
          try {
            const i = await api.pub.info(id);
            setInfo(i);
            setLocked(false);
          } catch (e) {
            setError(e.status === 404 ? GONE : e.message);
          }
        }} />}
        {info && !locked && (info.kind === 'dir' ? <SharedFolder id={id} info={info} /> : <SharedFile id={id} info={info} />)}
      </main>
      <Hosts />
    </div>
  );
}

function Unlock({ id, onOpen }) {
  const [pw, setPw] = useState('');
  const [err, setErr] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    if (!pw) return setErr('Type the password you were given with the link.');
    setBusy(true);
    setErr('');
    try {
      await api.pub.unlock(id, pw);
      onOpen();
    } catch (e2) {
      setErr(e2.status === 401 ? 'Wrong password: check it with the person who sent the link.'
        : e2.status === 429 ? `Too many attempts: wait ${e2.retryAfter || 60} s and try again.`
          : e2.status === 404 ? GONE : e2.message);
      setPw('');
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login-wrap">
      <form class="login card" onSubmit={submit} data-testid="unlock-form">
        <h1><Icon name="link" size={22} /> Shared with you</h1>
        <p class="muted">This link is protected by a password: type the one you were given with it.</p>
        <label class="field">
          <span>Password</span>
          <input type="password" autocomplete="off" data-testid="unlock-password" value={pw} onInput={(e) => setPw(e.currentTarget.value)} autofocus />
        </label>
        {err && <p class="form-error" role="alert" data-testid="unlock-error">{err}</p>}
        <button class="btn btn-primary btn-wide" disabled={busy} data-testid="unlock-submit">{busy ? 'Checking…' : 'Open'}</button>
      </form>
    </div>
  );
}

function SharedFile({ id, info }) {
  const entry = { name: info.name, path: '/' + info.name, size: info.size, kind: 'file' };
  const src = (inline) => urls.pubDownload(id, '', inline);
  return (
    <div class="page shared-file" data-testid="shared-file">
      <div class="page-head">
        <h1 class="ellipsis"><Icon name={iconOf(entry)} size={22} /> {info.name}</h1>
        <span class="muted">{fmtSize(info.size)}{info.expires ? ` · until ${fmtTime(info.expires)}` : ''}</span>
        <span class="spacer" />
        <button class="btn btn-primary" data-testid="shared-download" onClick={() => download(src(false))}><Icon name="download" /> Download</button>
      </div>
      <div class={`shared-view viewer-${viewerOf(info.name) || 'none'}`}>
        <MediaBody entry={entry} src={src} />
      </div>
    </div>
  );
}

function SharedFolder({ id, info }) {
  const [path, setPath] = useState('/');
  const [entries, setEntries] = useState(null);
  const [error, setError] = useState('');
  const [open, setOpen] = useState(null);
  useEffect(() => {
    setEntries(null);
    api.pub.list(id, path).then((r) => {
      setEntries(r.entries || []);
      setError('');
    }, (e) => setError(e.status === 404 ? GONE : e.message));
  }, [path]);
  const sorted = useMemo(() => (entries || []).slice().sort((a, b) => (a.kind === 'dir' ? 0 : 1) - (b.kind === 'dir' ? 0 : 1) || a.name.localeCompare(b.name)), [entries]);
  const crumbs = path === '/' ? [] : path.slice(1).split('/');
  if (open) {
    const src = (inline) => urls.pubDownload(id, open.rel, inline);
    return (
      <div class={`viewer viewer-${viewerOf(open.name) || 'none'}`} data-testid="viewer" data-name={open.name} data-kind={viewerOf(open.name) || 'none'}>
        <header class="viewer-head">
          <button class="icon-btn" aria-label="Close" data-testid="viewer-close" onClick={() => setOpen(null)}><Icon name="back" /></button>
          <span class="viewer-title">{open.name}</span>
          <span class="spacer" />
          <button class="icon-btn" aria-label="Download" data-testid="viewer-download" onClick={() => download(src(false))}><Icon name="download" /></button>
        </header>
        <div class="viewer-body"><MediaBody entry={open} src={src} /></div>
      </div>
    );
  }
  return (
    <div class="page shared-folder" data-testid="shared-folder">
      <div class="page-head">
        <h1 class="ellipsis"><Icon name="folder" size={22} /> {info.name}</h1>
        <span class="spacer" />
        <button class="btn btn-primary" data-testid="shared-download" onClick={() => download(urls.pubDownload(id, path, false))}><Icon name="download" /> Download {path === '/' ? 'all' : 'this folder'} (zip)</button>
      </div>
      <nav class="crumbs">
        <button class="link" onClick={() => setPath('/')}>{info.name}</button>
        {crumbs.map((c, i) => (
          <span key={i}><span class="crumb-sep">/</span><button class="link" onClick={() => setPath('/' + crumbs.slice(0, i + 1).join('/'))}>{c}</button></span>
        ))}
      </nav>
      {error && <p class="form-error">{error}</p>}
      {!entries && !error && <Spinner />}
      {entries && !entries.length && <div class="empty">This folder is empty.</div>}
      {entries && entries.length > 0 && (
        <table class="table">
          <tbody>
            {sorted.map((e) => {
              const rel = join(path, e.name);
              return (
                <tr key={e.name} data-testid="row" data-name={e.name}>
                  <td>
                    <button class="link" data-testid="row-open" onClick={() => (e.kind === 'dir' ? setPath(rel) : setOpen({ ...e, rel, path: rel }))}>
                      <Icon name={iconOf(e)} /> {e.name}
                    </button>
                  </td>
                  <td class="hide-narrow">{e.kind === 'dir' ? '—' : fmtSize(e.size)}</td>
                  <td class="hide-narrow">{fmtTime(e.mtime)}</td>
                  <td class="actions"><button class="icon-btn" aria-label={`Download ${e.name}`} onClick={() => download(urls.pubDownload(id, rel, false))}><Icon name="download" /></button></td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
