// Shared pieces of the interface: toasts, promise-based dialogs, a progress
// bar and the theme switch. Dialogs and toasts are hosted once by <Hosts/>
// and opened from anywhere with toast() and ask().
import { Icon } from './icons.jsx';
import { useEffect, useRef, useState } from 'preact/hooks';

let toastSeq = 0;
let toasts = [];
const toastSubs = new Set();
function emitToasts() {
  toastSubs.forEach((f) => f(toasts));
}

/**
 * toast shows a message. opts: {kind: 'error'|'ok'|'info', action: {label,
 * run}, timeout (ms, 0 keeps it)}. Returns a function that closes it.
 */
export function toast(message, opts = {}) {
  const id = ++toastSeq;
  const kind = opts.kind || 'info';
  const timeout = opts.timeout ?? (kind === 'error' ? 9000 : 5000);
  toasts = [...toasts, { id, message, kind, action: opts.action }];
  emitToasts();
  const close = () => {
    toasts = toasts.filter((t) => t.id !== id);
    emitToasts();
  };
  if (timeout) setTimeout(close, timeout);
  return close;
}

/** toastError shows an error (ApiError or other) as an error toast. */
export function toastError(prefix, e) {
  if (e && e.name === 'AbortError') return;
  let msg = (e && e.message) || String(e);
  if (e && e.status === 429 && e.retryAfter) msg += ` (wait ${e.retryAfter} s)`;
  toast(prefix ? `${prefix}: ${msg}` : msg, { kind: 'error' });
}

let dialog = null;
let dialogSeq = 0;
const dialogSubs = new Set();
function emitDialog() {
  dialogSubs.forEach((f) => f(dialog));
}

/**
 * ask opens a modal dialog and resolves with the chosen button's value (or
 * null on Escape). opts: {title, message, input: {value, label, select:
 * [start,end]}, fields: [{name,label,type,value}], buttons: [{label, value,
 * kind: 'primary'|'danger'}], testid, body (a component)}. With input the
 * value is {button, value}; with fields {button, values}.
 */
export function ask(opts) {
  return new Promise((resolve) => {
    if (dialog) dialog.resolve(null);
    dialog = { ...opts, id: ++dialogSeq, resolve: (v) => {
      dialog = null;
      emitDialog();
      resolve(v);
    } };
    emitDialog();
  });
}

export function confirmDialog(title, message, label = 'OK', danger = false, testid = 'confirm-dialog') {
  return ask({
    title, message, testid,
    buttons: [{ label: 'Cancel', value: false }, { label, value: true, kind: danger ? 'danger' : 'primary' }],
  }).then((v) => v === true);
}

export function prompt(title, label, value = '', select, testid = 'prompt-dialog', okLabel = 'OK') {
  return ask({
    title, testid,
    input: { label, value, select },
    buttons: [{ label: 'Cancel', value: null }, { label: okLabel, value: 'ok', kind: 'primary' }],
  }).then((r) => (r && r.button === 'ok' ? r.value : null));
}

function Toasts() {
  const [list, setList] = useState(toasts);
  useEffect(() => {
    toastSubs.add(setList);
    return () => toastSubs.delete(setList);
  }, []);
  return (
    <div class="toasts" role="status" aria-live="polite">
      {list.map((t) => (
        <div key={t.id} class={`toast toast-${t.kind}`} data-testid="toast" data-kind={t.kind}>
          <span>{t.message}</span>
          {t.action && (
            <button class="btn btn-small" data-testid="toast-action" onClick={() => {
              toasts = toasts.filter((x) => x.id !== t.id);
              emitToasts();
              t.action.run();
            }}>{t.action.label}</button>
          )}
          <button class="icon-btn" aria-label="Close" onClick={() => {
            toasts = toasts.filter((x) => x.id !== t.id);
            emitToasts();
          }}><Icon name="close" size={16} /></button>
        </div>
      ))}
    </div>
  );
}

function DialogHost() {
  const [d, setD] = useState(dialog);
  useEffect(() => {
    dialogSubs.add(setD);
    return () => dialogSubs.delete(setD);
  }, []);
  if (!d) return null;
  return <Dialog key={d.id} d={d} />;
}

function Dialog({ d }) {
  const [value, setValue] = useState(d.input ? d.input.value || '' : '');
  const [values, setValues] = useState(() => Object.fromEntries((d.fields || []).map((f) => [f.name, f.value ?? ''])));
  const inputRef = useRef();
  const boxRef = useRef();
  useEffect(() => {
    const el = inputRef.current;
    if (el) {
      el.focus();
      if (d.input && d.input.select) el.setSelectionRange(d.input.select[0], d.input.select[1]);
      else el.select();
    } else if (boxRef.current) {
      const b = boxRef.current.querySelector('.btn-primary, .btn-danger, input, button');
      if (b) b.focus();
    }
  }, []);
  const finish = (v) => {
    if (v === null || v === false || v === undefined) return d.resolve(v ?? null);
    if (d.input) return d.resolve({ button: v, value });
    if (d.fields) return d.resolve({ button: v, values });
    d.resolve(v);
  };
  const primary = (d.buttons || []).find((b) => b.kind === 'primary' || b.kind === 'danger');
  return (
    <div class="backdrop" onMouseDown={(e) => e.target === e.currentTarget && finish(null)}>
      <form
        class="dialog" role="dialog" aria-modal="true" aria-label={d.title} data-testid={d.testid || 'dialog'} ref={boxRef}
        onSubmit={(e) => {
          e.preventDefault();
          if (primary) finish(primary.value);
        }}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            finish(null);
          }
        }}
      >
        {d.title && <h2>{d.title}</h2>}
        {d.message && <p class="dialog-msg">{d.message}</p>}
        {d.body}
        {d.input && (
          <label class="field">
            <span>{d.input.label}</span>
            <input ref={inputRef} data-testid="dialog-input" value={value} onInput={(e) => setValue(e.currentTarget.value)} />
          </label>
        )}
        {(d.fields || []).map((f, i) => (
          <label class="field" key={f.name}>
            <span>{f.label}</span>
            <input
              ref={i === 0 ? inputRef : undefined} type={f.type || 'text'} data-testid={`dialog-field-${f.name}`}
              placeholder={f.placeholder || ''} autocomplete={f.autocomplete || 'off'}
              value={values[f.name]} onInput={(e) => setValues({ ...values, [f.name]: e.currentTarget.value })}
            />
          </label>
        ))}
        <div class="dialog-buttons">
          {(d.buttons || []).map((b) => (
            <button
              key={b.label} type={b === primary ? 'submit' : 'button'} data-testid={`dialog-${b.testid || String(b.value)}`}
              class={`btn ${b.kind ? 'btn-' + b.kind : ''}`}
              onClick={b === primary ? undefined : () => finish(b.value)}
            >{b.label}</button>
          ))}
        </div>
      </form>
    </div>
  );
}

export function Hosts() {
  return (
    <>
      <DialogHost />
      <Toasts />
    </>
  );
}

export function Progress({ value, max = 1, label, testid }) {
  const pct = max > 0 ? Math.min(100, Math.max(0, (value / max) * 100)) : 0;
  return (
    <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow={Math.round(pct)} aria-label={label} data-testid={testid}>
      <div class="progress-bar" style={{ width: pct + '%' }} />
    </div>
  );
}

export function Spinner({ label = 'Loading…' }) {
  return <div class="spinner-wrap" data-testid="loading"><span class="spinner" aria-hidden="true" />{label}</div>;
}

/** theme: 'light' | 'dark' | '' (follow the system), kept in localStorage. */
export function getTheme() {
  try {
    return localStorage.getItem('qsfs-theme') || '';
  } catch {
    return '';
  }
}

export function applyTheme(t) {
  const dark = t === 'dark' || (!t && window.matchMedia('(prefers-color-scheme: dark)').matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
  return dark;
}

export function ThemeToggle() {
  const [t, setT] = useState(getTheme());
  const dark = applyTheme(t);
  useEffect(() => {
    const mq = window.matchMedia('(prefers-color-scheme: dark)');
    const f = () => applyTheme(getTheme());
    mq.addEventListener('change', f);
    return () => mq.removeEventListener('change', f);
  }, []);
  return (
    <button
      class="icon-btn" data-testid="theme-toggle" title={dark ? 'Switch to light mode' : 'Switch to dark mode'} aria-label="Toggle dark mode"
      onClick={() => {
        const next = dark ? 'light' : 'dark';
        try {
          localStorage.setItem('qsfs-theme', next);
        } catch { /* private mode: the choice lasts this page only */ }
        setT(next);
        window.dispatchEvent(new Event('qsfs-theme'));
      }}
    ><Icon name={dark ? 'sun' : 'moon'} /></button>
  );
}

/** useDarkTheme follows the page's theme (for CodeMirror). */
export function useDarkTheme() {
  const [dark, setDark] = useState(document.documentElement.dataset.theme === 'dark');
  useEffect(() => {
    const obs = new MutationObserver(() => setDark(document.documentElement.dataset.theme === 'dark'));
    obs.observe(document.documentElement, { attributes: true, attributeFilter: ['data-theme'] });
    return () => obs.disconnect();
  }, []);
  return dark;
}

/** useRefresh calls fn when the page's nav link is clicked again. */
export function useRefresh(fn) {
  const ref = useRef(fn);
  ref.current = fn;
  useEffect(() => {
    const f = () => ref.current();
    window.addEventListener('qsfs-refresh', f);
    return () => window.removeEventListener('qsfs-refresh', f);
  }, []);
}
