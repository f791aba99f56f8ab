// The viewer: a full-window overlay that shows a file by its kind: images
// (with next/previous), video and audio streamed by the browser (Range
// requests give seeking), PDF through pdf.js and text in the editor. The
// pdf.js and CodeMirror chunks load only when needed.
import { Icon } from './icons.jsx';
import { useEffect, useState } from 'preact/hooks';
import { urls } from './api.js';
import { Spinner } from './ui.jsx';
import { download } from './browser.jsx';
import { shareDialog } from './shares.jsx';
import { fmtSize, viewerOf } from './util.js';

/** useLazy loads a module once and gives its export name. */
export function useLazy(load, name) {
  const [C, setC] = useState(null);
  const [err, setErr] = useState(null);
  useEffect(() => {
    let live = true;
    load().then((m) => live && setC(() => m[name]), (e) => live && setErr(e));
    return () => {
      live = false;
    };
  }, []);
  return [C, err];
}

const loadEditor = () => import('./editor.jsx');
const loadPdf = () => import('./pdf.jsx');

function LazyEditor(props) {
  const [Editor, err] = useLazy(loadEditor, 'Editor');
  if (err) return <div class="empty">The editor failed to load: reload the page.</div>;
  return Editor ? <Editor {...props} /> : <Spinner label="Loading the editor…" />;
}

export function LazyPdf(props) {
  const [Pdf, err] = useLazy(loadPdf, 'PdfView');
  if (err) return <div class="empty">The PDF viewer failed to load: reload the page.</div>;
  return Pdf ? <Pdf {...props} /> : <Spinner label="Loading the PDF viewer…" />;
}

/** ZoomImage fits the window; a click shows it at full size (and back). */
function ZoomImage({ src, alt, onError }) {
  const [full, setFull] = useState(false);
  return (
    <img
      class={`view-image ${full ? 'full' : ''}`} src={src} alt={alt} data-testid="viewer-image" data-zoom={full ? 'full' : 'fit'}
      title={full ? 'Click to fit the window' : 'Click for full size'} onClick={() => setFull(!full)} onError={onError}
    />
  );
}

/**
 * MediaBody shows one file by kind; src(inline) is its download URL. Used
 * by the app's viewer and by the public share page.
 */
export function MediaBody({ entry, src, editable, onSaved }) {
  const kind = viewerOf(entry.name);
  const [failed, setFailed] = useState(false);
  useEffect(() => setFailed(false), [entry.path]);
  if (failed) {
    return (
      <div class="empty" data-testid="viewer-failed">
        <p>This file cannot be shown here (the browser cannot decode it).</p>
        <button class="btn" onClick={() => download(src(false))}><Icon name="download" /> Download it</button>
      </div>
    );
  }
  switch (kind) {
    case 'image':
      return <ZoomImage src={src(true)} alt={entry.name} onError={() => setFailed(true)} />;
    case 'video':
      return <video class="view-video" src={src(true)} controls preload="metadata" data-testid="viewer-video" onError={() => setFailed(true)} />;
    case 'audio':
      return (
        <div class="view-audio">
          <div class="big-icon"><Icon name="audio" size={64} /></div>
          <audio src={src(true)} controls preload="metadata" data-testid="viewer-audio" onError={() => setFailed(true)} />
        </div>
      );
    case 'pdf':
      return <LazyPdf url={src(true)} />;
    case 'text':
      if (editable) return <LazyEditor entry={entry} onSaved={onSaved} />;
      return <LazyEditor entry={entry} readOnly url={src(true)} />;
  }
  return (
    <div class="empty" data-testid="viewer-none">
      <div class="big-icon"><Icon name="file" size={64} /></div>
      <p>{entry.name} · {fmtSize(entry.size)}</p>
      <p class="muted">There is no preview for this kind of file.</p>
      <button class="btn btn-primary" data-testid="viewer-download-big" onClick={() => download(src(false))}><Icon name="download" /> Download</button>
    </div>
  );
}

export function Viewer({ entry, siblings, onClose, onOpen, onSaved }) {
  const kind = viewerOf(entry.name);
  const idx = siblings.findIndex((s) => s.path === entry.path);
  const nav = kind === 'image' || kind === 'video' || kind === 'audio' || kind === 'pdf';
  const prev = nav && idx > 0 ? siblings[idx - 1] : null;
  const next = nav && idx >= 0 && idx < siblings.length - 1 ? siblings[idx + 1] : null;
  useEffect(() => {
    const onKey = (e) => {
      if (document.querySelector('.backdrop')) return;
      const t = e.target;
      const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
      if (e.key === 'Escape' && !typing) {
        e.preventDefault();
        onClose();
      } else if (!typing && kind !== 'text' && kind !== 'pdf') {
        if (e.key === 'ArrowLeft' && prev) onOpen(prev);
        else if (e.key === 'ArrowRight' && next) onOpen(next);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });
  const src = (inline) => urls.download(entry.path, inline);
  return (
    <div class={`viewer viewer-${kind || 'none'}`} role="dialog" aria-modal="true" aria-label={entry.name} data-testid="viewer" data-name={entry.name} data-kind={kind || 'none'}>
      <header class="viewer-head">
        <button class="icon-btn" aria-label="Close" title="Close (Esc)" data-testid="viewer-close" onClick={onClose}><Icon name="back" /></button>
        <span class="viewer-title" title={entry.path}>{entry.name}</span>
        {entry.remote === true && <span class="badge">remote-only</span>}
        <span class="spacer" />
        {nav && (
          <>
            <button class="icon-btn" aria-label="Previous" title="Previous (←)" data-testid="viewer-prev" disabled={!prev} onClick={() => prev && onOpen(prev)}><Icon name="prev" /></button>
            <span class="muted hide-narrow">{idx + 1} / {siblings.length}</span>
            <button class="icon-btn" aria-label="Next" title="Next (→)" data-testid="viewer-next" disabled={!next} onClick={() => next && onOpen(next)}><Icon name="next" /></button>
          </>
        )}
        <button class="icon-btn" aria-label="Share" title="Share" data-testid="viewer-share" onClick={() => shareDialog(entry)}><Icon name="link" /></button>
        <button class="icon-btn" aria-label="Download" title="Download" data-testid="viewer-download" onClick={() => download(src(false))}><Icon name="download" /></button>
      </header>
      <div class="viewer-body">
        <MediaBody key={entry.path} entry={entry} src={src} editable onSaved={onSaved} />
      </div>
    </div>
  );
}
