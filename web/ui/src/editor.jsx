// The text editor (a lazily loaded chunk): CodeMirror 6 with highlighting
// by file extension, a sanitized side-by-side Markdown preview, and a save
// (Ctrl+S / ⌘S) that sends If-Match with the ETag the text was read with,
// so a file changed meanwhile is never overwritten silently.
import { useEffect, useRef, useState } from 'preact/hooks';
import { EditorView, basicSetup } from 'codemirror';
import { Compartment, EditorState } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { indentWithTab } from '@codemirror/commands';
import { oneDark } from '@codemirror/theme-one-dark';
import { marked } from 'marked';
import DOMPurify from 'dompurify';
import { api, request, urls } from './api.js';
import { ask, Spinner, toast, toastError, useDarkTheme } from './ui.jsx';
import { setGuard } from './guard.js';
import { ext, join, parent } from './util.js';

/** language loads the CodeMirror mode for a file name (null: plain). */
async function language(name) {
  switch (ext(name)) {
    case 'md': case 'markdown': {
      const m = await import('@codemirror/lang-markdown');
      return m.markdown();
    }
    case 'js': case 'mjs': case 'cjs': case 'jsx': {
      const m = await import('@codemirror/lang-javascript');
      return m.javascript({ jsx: true });
    }
    case 'ts': case 'tsx': {
      const m = await import('@codemirror/lang-javascript');
      return m.javascript({ typescript: true, jsx: name.endsWith('x') });
    }
    case 'json': {
      const m = await import('@codemirror/lang-json');
      return m.json();
    }
    case 'py': {
      const m = await import('@codemirror/lang-python');
      return m.python();
    }
    case 'go': {
      const m = await import('@codemirror/lang-go');
      return m.go();
    }
    case 'html': case 'htm': {
      const m = await import('@codemirror/lang-html');
      return m.html();
    }
    case 'css': case 'scss': {
      const m = await import('@codemirror/lang-css');
      return m.css();
    }
    case 'xml': case 'svg': {
      const m = await import('@codemirror/lang-xml');
      return m.xml();
    }
    case 'yml': case 'yaml': {
      const m = await import('@codemirror/lang-yaml');
      return m.yaml();
    }
    case 'rs': {
      const m = await import('@codemirror/lang-rust');
      return m.rust();
    }
    case 'sql': {
      const m = await import('@codemirror/lang-sql');
      return m.sql();
    }
  }
  return null;
}

const lightTheme = EditorView.theme({
  '&': { backgroundColor: 'var(--bg)', color: 'var(--fg)' },
  '.cm-gutters': { backgroundColor: 'var(--bg2)', color: 'var(--muted)', borderRight: '1px solid var(--line)' },
});

/**
 * sanitize turns Markdown into safe HTML: DOMPurify strips scripts and
 * handlers; images inside the tree load through the download API and
 * outside images (which the page's CSP would refuse) become links.
 */
function renderMarkdown(text, dir, imgURL) {
  const html = marked.parse(text, { async: false, gfm: true });
  DOMPurify.addHook('afterSanitizeAttributes', (node) => {
    if (node.tagName === 'A' && node.getAttribute('href')) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer');
    }
    if (node.tagName === 'IMG') {
      const src = node.getAttribute('src') || '';
      if (/^[a-z][a-z0-9+.-]*:/i.test(src) || src.startsWith('//')) {
        if (!src.startsWith('data:image/')) {
          node.removeAttribute('src');
          node.setAttribute('alt', `[image not loaded: ${src}]`);
        }
      } else if (src && imgURL) {
        let p = src.startsWith('/') ? src : join(dir, src);
        const parts = [];
        for (const s of p.split('/')) {
          if (s === '..') parts.pop();
          else if (s && s !== '.') parts.push(s);
        }
        p = '/' + parts.join('/');
        node.setAttribute('src', imgURL(p));
      } else {
        node.removeAttribute('src');
      }
    }
  });
  try {
    return DOMPurify.sanitize(html, { FORBID_TAGS: ['style', 'form', 'iframe'], FORBID_ATTR: ['style'] });
  } finally {
    DOMPurify.removeHook('afterSanitizeAttributes');
  }
}

export function Editor({ entry, onSaved, readOnly, url }) {
  const host = useRef();
  const viewRef = useRef(null);
  const etag = useRef('');
  const saved = useRef(null); // the doc as last loaded or saved
  const themeC = useRef(new Compartment());
  const [state, setState] = useState('loading'); // loading | ready | error
  const [error, setError] = useState('');
  const [dirty, setDirty] = useState(false);
  const [saving, setSaving] = useState(false);
  const [md] = useState(() => ['md', 'markdown'].includes(ext(entry.name)));
  const [preview, setPreview] = useState(() => md && window.innerWidth > 800);
  const [html, setHtml] = useState('');
  const dark = useDarkTheme();
  const dirtyRef = useRef(false);
  const saveRef = useRef(null);

  const refreshPreview = (text) => {
    if (!md) return;
    setHtml(renderMarkdown(text, parent(entry.path), readOnly ? null : (p) => urls.download(p, true)));
  };

  const load = async () => {
    if (readOnly) {
      const text = await request(url, { raw: true }).then((r) => r.text());
      return { text, etag: '' };
    }
    return api.getText(entry.path);
  };

  const replaceDoc = (text) => {
    const v = viewRef.current;
    v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: text } });
    saved.current = v.state.doc;
    dirtyRef.current = false;
    setDirty(false);
    refreshPreview(text);
  };

  const save = async (force) => {
    const v = viewRef.current;
    if (!v || readOnly || saving) return;
    const text = v.state.doc.toString();
    const doc = v.state.doc;
    setSaving(true);
    try {
      const res = await api.putText(entry.path, text, force || etag.current);
      etag.current = res.etag;
      saved.current = doc;
      const now = !v.state.doc.eq(doc);
      dirtyRef.current = now;
      setDirty(now);
      toast(`Saved ${entry.name}.`, { kind: 'ok', timeout: 2500 });
      if (onSaved) onSaved();
    } catch (e) {
      if (e.status === 412) {
        setSaving(false);
        const c = await ask({
          title: 'Changed since you opened it',
          message: `${entry.name} was changed by someone or something else since you opened it. Reload it (your edits are lost), overwrite it with your version, or keep editing?`,
          testid: 'conflict-save-dialog',
          buttons: [
            { label: 'Keep editing', value: 'keep' },
            { label: 'Reload', value: 'reload' },
            { label: 'Overwrite', value: 'overwrite', kind: 'danger' },
          ],
        });
        if (c === 'reload') {
          try {
            const r = await api.getText(entry.path);
            etag.current = r.etag;
            replaceDoc(r.text);
          } catch (e2) {
            toastError('Cannot reload', e2);
          }
        } else if (c === 'overwrite') {
          let tag = e.body && e.body.etag;
          if (!tag) {
            try {
              tag = (await api.stat(entry.path)).etag;
            } catch { /* a missing file: create it */ }
          }
          etag.current = tag || '';
          return save(tag || '');
        }
        return;
      }
      toastError(`Cannot save ${entry.name}`, e);
    } finally {
      setSaving(false);
    }
  };
  saveRef.current = save;

  useEffect(() => {
    let live = true;
    let timer = 0;
    (async () => {
      let r;
      try {
        r = await load();
      } catch (e) {
        if (!live) return;
        setState('error');
        setError(e.status === 415 ? 'This file is not UTF-8 text, so it cannot be edited here: download it instead.'
          : e.status === 413 ? 'This file is over 8 MiB, too large for the editor: download it instead.' : e.message);
        return;
      }
      const lang = await language(entry.name).catch(() => null);
      if (!live) return;
      etag.current = r.etag;
      const exts = [
        basicSetup,
        keymap.of([
          { key: 'Mod-s', preventDefault: true, run: () => {
            saveRef.current();
            return true;
          } },
          indentWithTab,
        ]),
        EditorView.lineWrapping,
        themeC.current.of(document.documentElement.dataset.theme === 'dark' ? oneDark : lightTheme),
        EditorState.readOnly.of(!!readOnly),
        EditorView.contentAttributes.of({ 'data-testid': 'editor-content', 'aria-label': `Contents of ${entry.name}` }),
        EditorView.updateListener.of((u) => {
          if (!u.docChanged) return;
          const d = !u.state.doc.eq(saved.current);
          if (d !== dirtyRef.current) {
            dirtyRef.current = d;
            setDirty(d);
          }
          clearTimeout(timer);
          timer = setTimeout(() => refreshPreview(u.state.doc.toString()), 150);
        }),
      ];
      if (lang) exts.push(lang);
      const view = new EditorView({ state: EditorState.create({ doc: r.text, extensions: exts }), parent: host.current });
      viewRef.current = view;
      saved.current = view.state.doc;
      refreshPreview(r.text);
      setState('ready');
      if (!readOnly) view.focus();
    })();
    if (!readOnly) setGuard(() => dirtyRef.current);
    const onKey = (e) => {
      if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === 's') {
        e.preventDefault();
        saveRef.current();
      }
    };
    window.addEventListener('keydown', onKey);
    return () => {
      live = false;
      clearTimeout(timer);
      window.removeEventListener('keydown', onKey);
      if (!readOnly) setGuard(null);
      if (viewRef.current) viewRef.current.destroy();
    };
  }, [entry.path]);

  useEffect(() => {
    const v = viewRef.current;
    if (v) v.dispatch({ effects: themeC.current.reconfigure(dark ? oneDark : lightTheme) });
  }, [dark, state]);

  return (
    <div class="editor" data-testid="editor" data-state={state} data-dirty={dirty ? '1' : '0'}>
      <div class="editor-bar">
        {!readOnly && (
          <button class="btn btn-primary btn-small" data-testid="editor-save" disabled={state !== 'ready' || saving} onClick={() => save()} title="Save (Ctrl+S)">
            {saving ? 'Saving…' : 'Save'}
          </button>
        )}
        <span class="muted" data-testid="editor-status">
          {readOnly ? 'Read only' : state === 'ready' ? (dirty ? 'Unsaved changes' : 'All changes saved') : ''}
        </span>
        <span class="spacer" />
        {md && (
          <button class={`btn btn-small ${preview ? 'active' : ''}`} data-testid="editor-preview-toggle" onClick={() => setPreview(!preview)} aria-pressed={preview}>
            Preview
          </button>
        )}
      </div>
      {state === 'loading' && <Spinner label="Loading the text…" />}
      {state === 'error' && <div class="empty" data-testid="editor-error"><p>{error}</p></div>}
      <div class={`editor-split ${md && preview ? 'with-preview' : ''}`} hidden={state === 'error'}>
        <div class="editor-host" ref={host} />
        {md && preview && (
          // eslint-disable-next-line react/no-danger
          <article class="md-preview" data-testid="md-preview" dangerouslySetInnerHTML={{ __html: html }} />
        )}
      </div>
    </div>
  );
}
