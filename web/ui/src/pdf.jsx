// The PDF viewer (a lazily loaded chunk): pdf.js renders one page at a
// time into a canvas, with page navigation and zoom. The worker is the
// bundled file under /assets/ (no CDN) and eval is off, as the page's CSP
// forbids it.
import { useEffect, useRef, useState } from 'preact/hooks';
import { GlobalWorkerOptions, getDocument } from 'pdfjs-dist';
import workerUrl from 'pdfjs-dist/build/pdf.worker.min.mjs?url';
import { Spinner } from './ui.jsx';

GlobalWorkerOptions.workerSrc = workerUrl;

export function PdfView({ url }) {
  const canvas = useRef();
  const wrap = useRef();
  const [doc, setDoc] = useState(null);
  const [page, setPage] = useState(1);
  const [zoom, setZoom] = useState(0); // 0: fit the width
  const [error, setError] = useState('');
  const [rendered, setRendered] = useState(0);
  const scaleRef = useRef(1); // the scale the page is drawn at

  useEffect(() => {
    const task = getDocument({
      url,
      isEvalSupported: false,
      standardFontDataUrl: '/assets/pdfjs/standard_fonts/',
      useWasm: false,
      verbosity: 0,
      withCredentials: true,
    });
    let live = true;
    task.promise.then((d) => live && setDoc(d), (e) => {
      if (!live) return;
      setError(e && e.name === 'PasswordException' ? 'This PDF is protected by a password: download it and open it in a PDF reader.'
        : 'This PDF cannot be shown (it may be damaged): download it instead.');
    });
    return () => {
      live = false;
      task.destroy();
    };
  }, [url]);

  useEffect(() => {
    if (!doc) return;
    let live = true;
    let rt = null;
    (async () => {
      const p = await doc.getPage(page);
      if (!live) return;
      const base = p.getViewport({ scale: 1 });
      const avail = Math.max(200, (wrap.current ? wrap.current.clientWidth : 800) - 32);
      const scale = zoom || Math.min(2.5, avail / base.width);
      scaleRef.current = scale;
      const vp = p.getViewport({ scale });
      const ratio = window.devicePixelRatio || 1;
      const c = canvas.current;
      c.width = Math.floor(vp.width * ratio);
      c.height = Math.floor(vp.height * ratio);
      c.style.width = Math.floor(vp.width) + 'px';
      c.style.height = Math.floor(vp.height) + 'px';
      rt = p.render({ canvas: c, canvasContext: c.getContext('2d'), viewport: vp, transform: ratio !== 1 ? [ratio, 0, 0, ratio, 0, 0] : undefined });
      try {
        await rt.promise;
        if (live) setRendered(page);
      } catch { /* cancelled by a newer render */ }
    })();
    return () => {
      live = false;
      if (rt) rt.cancel();
    };
  }, [doc, page, zoom]);

  useEffect(() => {
    const onKey = (e) => {
      const t = e.target;
      if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA')) return;
      if (!doc) return;
      if ((e.key === 'ArrowRight' || e.key === 'PageDown') && page < doc.numPages) setPage(page + 1);
      else if ((e.key === 'ArrowLeft' || e.key === 'PageUp') && page > 1) setPage(page - 1);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  if (error) return <div class="empty" data-testid="pdf-error"><p>{error}</p></div>;
  const step = (f) => setZoom(Math.min(5, Math.max(0.25, scaleRef.current * f)));
  return (
    <div class="pdf" data-testid="pdf" data-page={page} data-pages={doc ? doc.numPages : 0} data-rendered={rendered}>
      <div class="pdf-bar">
        <button class="icon-btn" aria-label="Previous page" data-testid="pdf-prev" disabled={!doc || page <= 1} onClick={() => setPage(page - 1)}>‹</button>
        <span data-testid="pdf-page">{doc ? `${page} / ${doc.numPages}` : '…'}</span>
        <button class="icon-btn" aria-label="Next page" data-testid="pdf-next" disabled={!doc || page >= doc.numPages} onClick={() => setPage(page + 1)}>›</button>
        <span class="spacer" />
        <button class="icon-btn" aria-label="Zoom out" data-testid="pdf-zoom-out" onClick={() => step(1 / 1.25)}>−</button>
        <button class="btn btn-small" data-testid="pdf-fit" onClick={() => setZoom(0)}>{zoom ? `${Math.round(zoom * 100)}%` : 'Fit'}</button>
        <button class="icon-btn" aria-label="Zoom in" data-testid="pdf-zoom-in" onClick={() => step(1.25)}>+</button>
      </div>
      <div class="pdf-pages" ref={wrap}>
        {!doc && <Spinner label="Opening the PDF…" />}
        <canvas ref={canvas} data-testid="pdf-canvas" hidden={!doc} />
      </div>
    </div>
  );
}
