// The app shell: the session (login, logout), the hash router and the
// navigation around the pages.
import { Icon } from './icons.jsx';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, onUnauthorized, setCSRF } from './api.js';
import { Hosts, ThemeToggle, Spinner, ask } from './ui.jsx';
import { Browser } from './browser.jsx';
import { TrashPage } from './trash.jsx';
import { SharesPage } from './shares.jsx';
import { HealthPage } from './health.jsx';
import { SessionsPage } from './sessions.jsx';
import { UploadPanel } from './upload.jsx';
import { confirmLeave } from './guard.js';

/** route parses the hash: {page, path}. */
function parseHash() {
  const h = location.hash.replace(/^#/, '') || '/files/';
  if (h.startsWith('/files')) {
    const rest = h.slice('/files'.length) || '/';
    let path;
    try {
      path = rest.split('/').map(decodeURIComponent).join('/');
    } catch {
      path = '/';
    }
    path = path.replace(/\/+$/, '') || '/';
    return { page: 'files', path };
  }
  const page = h.slice(1).split('/')[0];
  if (['trash', 'shares', 'health', 'sessions'].includes(page)) return { page, path: '/' };
  return { page: 'files', path: '/' };
}

function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    let current = location.hash;
    const f = () => {
      if (location.hash === current) return;
      if (!confirmLeave()) {
        history.replaceState(null, '', current || '#/files/');
        return;
      }
      current = location.hash;
      setRoute(parseHash());
    };
    window.addEventListener('hashchange', f);
    return () => window.removeEventListener('hashchange', f);
  }, []);
  return route;
}

export function App() {
  const [me, setMe] = useState(undefined); // undefined: checking; null: logged out
  useEffect(() => {
    onUnauthorized(() => setMe(null));
    api.me().then((m) => {
      setCSRF(m.csrf);
      setMe(m);
    }, () => setMe(null));
  }, []);
  if (me === undefined) return <div class="center"><Spinner /><Hosts /></div>;
  if (!me) {
    return (
      <>
        <Login onLogin={(m) => {
          setCSRF(m.csrf);
          setMe(m);
        }} />
        <Hosts />
      </>
    );
  }
  return <Shell me={me} onLogout={() => {
    setCSRF('');
    setMe(null);
  }} />;
}

function Login({ onLogin }) {
  const [user, setUser] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [wait, setWait] = useState(0);
  const pwRef = useRef();
  useEffect(() => {
    if (wait <= 0) return;
    const t = setTimeout(() => setWait(wait - 1), 1000);
    return () => clearTimeout(t);
  }, [wait]);
  const submit = async (e) => {
    e.preventDefault();
    if (!user || !password) {
      setError('Type your user name and password.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      onLogin(await api.login(user, password));
    } catch (err) {
      if (err.status === 401) setError('Wrong user name or password: check both and try again.');
      else if (err.status === 429) {
        setWait(err.retryAfter || 60);
        setError('Too many failed sign-ins.');
      } else setError(err.message);
      setPassword('');
      if (pwRef.current) pwRef.current.focus();
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login-wrap">
      <form class="login card" onSubmit={submit} data-testid="login-form">
        <div class="login-brand"><img src="/assets/favicon.svg" alt="" width="40" height="40" /><h1>qsfs</h1></div>
        <label class="field">
          <span>User name</span>
          <input name="user" autocomplete="username" data-testid="login-user" value={user} onInput={(e) => setUser(e.currentTarget.value)} autofocus />
        </label>
        <label class="field">
          <span>Password</span>
          <input ref={pwRef} name="password" type="password" autocomplete="current-password" data-testid="login-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        {error && (
          <p class="form-error" role="alert" data-testid="login-error">
            {error}{wait > 0 ? ` Try again in ${wait} s.` : ''}
          </p>
        )}
        <button class="btn btn-primary btn-wide" type="submit" disabled={busy || wait > 0} data-testid="login-submit">
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </div>
  );
}

const NAV = [
  ['files', 'Files', '#/files/'],
  ['trash', 'Trash', '#/trash'],
  ['shares', 'Shares', '#/shares'],
  ['health', 'Health', '#/health'],
  ['sessions', 'Sessions', '#/sessions'],
];

export function showShortcuts() {
  const rows = [
    ['/', 'Search'], ['n', 'New file'], ['Shift+N', 'New folder'], ['F2', 'Rename'], ['Delete', 'Move to trash'],
    ['Enter', 'Open'], ['Backspace', 'Up one folder'], ['Ctrl+A', 'Select all'], ['↑ ↓', 'Move the cursor'],
    ['Ctrl+S / ⌘S', 'Save in the editor'], ['Esc', 'Close a viewer or dialog'], ['?', 'This help'],
  ];
  return ask({
    title: 'Keyboard shortcuts', testid: 'shortcuts-dialog',
    body: <table class="shortcuts"><tbody>{rows.map(([k, v]) => <tr key={k}><td><kbd>{k}</kbd></td><td>{v}</td></tr>)}</tbody></table>,
    buttons: [{ label: 'Close', value: true, kind: 'primary' }],
  });
}

function Shell({ me, onLogout }) {
  const route = useRoute();
  const [menu, setMenu] = useState(false);
  const logout = async () => {
    if (!confirmLeave()) return;
    try {
      await api.logout();
    } catch { /* the session is gone either way */ }
    onLogout();
  };
  return (
    <div class="shell">
      <header class="topbar">
        <a class="brand" href="#/files/"><img src="/assets/favicon.svg" alt="" width="24" height="24" /><span>qsfs</span></a>
        <nav class={`nav ${menu ? 'open' : ''}`} onClick={() => setMenu(false)}>
          {NAV.map(([id, label, href]) => (
            <a key={id} href={href} class={route.page === id ? 'active' : ''} data-testid={`nav-${id}`} onClick={() => {
              // The same link again: show it afresh.
              if (location.hash === href) window.dispatchEvent(new Event('qsfs-refresh'));
            }}>{label}</a>
          ))}
        </nav>
        <div class="topbar-right">
          <button class="icon-btn" title="Keyboard shortcuts (?)" aria-label="Keyboard shortcuts" data-testid="shortcuts" onClick={showShortcuts}><Icon name="keyboard" /></button>
          <ThemeToggle />
          <span class="user" title="Signed in">{me.user}</span>
          <button class="btn btn-small" onClick={logout} data-testid="logout">Sign out</button>
          <button class="icon-btn nav-toggle" aria-label="Menu" data-testid="nav-menu" onClick={() => setMenu(!menu)}><Icon name="menu" /></button>
        </div>
      </header>
      <main class="main">
        {route.page === 'files' && <Browser path={route.path} />}
        {route.page === 'trash' && <TrashPage />}
        {route.page === 'shares' && <SharesPage />}
        {route.page === 'health' && <HealthPage />}
        {route.page === 'sessions' && <SessionsPage />}
      </main>
      <UploadPanel />
      <Hosts />
    </div>
  );
}
