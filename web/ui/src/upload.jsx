// Resumable uploads (tus 1.0 at /api/upload/): a queue that runs a few at a
// time, shows per-file and total progress, pauses and resumes, retries a
// dropped connection by itself and, through the fingerprint kept in
// localStorage, resumes an upload cut off by a reload when the same file
// is added again. A 409 (the name exists) asks replace or skip.
import { Icon } from './icons.jsx';
import { useEffect, useState } from 'preact/hooks';
import * as tus from 'tus-js-client';
import { getCSRF } from './api.js';
import { ask, Progress, toast } from './ui.jsx';
import { fmtSize, join } from './util.js';

const PARALLEL = 3;
const CHUNK = 16 << 20;
// A dropped connection is retried for about ten minutes before the upload
// is marked failed (it can still be resumed by hand).
const RETRY = [0, 1000, 2000, 4000, 8000, 15000, 30000, 30000, 60000, 60000, 60000, 60000, 60000, 60000, 60000, 60000];

let seq = 0;
let items = [];
let conflictPolicy = null; // 'replace' | 'skip' for "all" answers in one batch
const subs = new Set();

function emit() {
  items = [...items];
  subs.forEach((f) => f(items));
}

function update(it, patch) {
  Object.assign(it, patch);
  emit();
}

/** useUploads follows the queue. */
export function useUploads() {
  const [list, setList] = useState(items);
  useEffect(() => {
    subs.add(setList);
    return () => subs.delete(setList);
  }, []);
  return list;
}

/**
 * addUploads queues files into the display folder dir. Each element is a
 * File or {file, relativePath} (folder uploads: "album/a.jpg").
 */
export function addUploads(dir, files) {
  conflictPolicy = null;
  for (const f of files) {
    const file = f instanceof File ? f : f.file;
    let rel = f instanceof File ? f.webkitRelativePath || '' : f.relativePath || '';
    rel = rel.replace(/^\/+/, '');
    if (rel === file.name) rel = '';
    items.push({
      id: ++seq, file, dir, relativePath: rel, name: rel || file.name,
      sent: 0, total: file.size, status: 'queued', error: '', overwrite: false, upload: null,
    });
  }
  emit();
  pump();
}

function pump() {
  let running = items.filter((i) => i.status === 'uploading').length;
  for (const it of items) {
    if (running >= PARALLEL) break;
    if (it.status === 'queued') {
      running++;
      start(it);
    }
  }
}

function finished(it) {
  pump();
  if (!items.some((i) => i.status === 'uploading' || i.status === 'queued' || i.status === 'conflict')) {
    window.dispatchEvent(new CustomEvent('qsfs-uploaded'));
  }
}

async function start(it) {
  update(it, { status: 'uploading', error: '' });
  const metadata = { filename: it.file.name, dir: it.dir };
  if (it.relativePath) metadata.relativePath = it.relativePath;
  if (it.overwrite) metadata.overwrite = '1';
  const up = new tus.Upload(it.file, {
    endpoint: '/api/upload/',
    chunkSize: CHUNK,
    retryDelays: RETRY,
    metadata,
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    fingerprint: (file) => Promise.resolve(
      ['qsfs', it.dir, it.relativePath, file.name, file.size, file.lastModified, it.overwrite ? 1 : 0].join('\u0000'),
    ),
    // Set per request (not in headers, which XHR would send twice) so a
    // token renewed by a new login is used on resume.
    onBeforeRequest: (req) => {
      req.setHeader('X-CSRF-Token', getCSRF());
    },
    // Retry what a dropped connection or a busy server causes; not a
    // refusal (4xx), except a PATCH's 423 (locked) and offset mismatch,
    // which resuming from the server's offset fixes.
    onShouldRetry: (err) => {
      const res = err.originalResponse;
      const status = res ? res.getStatus() : 0;
      const method = err.originalRequest ? err.originalRequest.getMethod() : '';
      if (status === 409) {
        // A PATCH's 409 is either an offset the server moved meanwhile (a
        // cut request it was still storing: resume from HEAD) or the name
        // taken meanwhile (ask).
        return method === 'PATCH' && /mismatch/i.test(res.getBody() || '');
      }
      if (status === 423) return method !== 'POST';
      return !(status >= 400 && status < 500);
    },
    onProgress: (sent, total) => update(it, { sent, total }),
    onAfterResponse: (req, res) => {
      const p = res.getHeader('Qsfs-Path');
      if (p) {
        try {
          it.path = decodeURIComponent(p);
        } catch {
          it.path = p;
        }
      }
    },
    onSuccess: () => {
      update(it, { status: 'done', sent: it.total });
      window.dispatchEvent(new CustomEvent('qsfs-uploaded-one', { detail: it }));
      finished(it);
    },
    onError: (err) => {
      const res = err && err.originalResponse;
      const status = res ? res.getStatus() : 0;
      if (status === 409) {
        conflict(it);
        return;
      }
      let msg = 'The upload failed: try again.';
      if (res) {
        try {
          msg = JSON.parse(res.getBody()).error || msg;
        } catch { /* not JSON */ }
        if (status === 413) msg = msg || 'Too large: free some space or ask for a higher limit.';
      } else {
        msg = 'The connection dropped and did not come back: press resume to go on from where it stopped.';
      }
      update(it, { status: 'error', error: msg });
      finished(it);
    },
  });
  it.upload = up;
  try {
    const prev = await up.findPreviousUploads();
    if (prev.length) up.resumeFromPreviousUpload(prev[0]);
  } catch { /* no storage: start afresh */ }
  if (it.status === 'uploading') up.start();
}

// Conflicts are asked one at a time, in the order they come.
let conflicts = Promise.resolve();
function conflict(it) {
  update(it, { status: 'conflict' });
  conflicts = conflicts.then(() => askConflict(it), () => askConflict(it));
}

async function askConflict(it) {
  let choice = conflictPolicy;
  if (!choice) {
    const target = join(it.dir, it.relativePath || it.file.name);
    const many = items.filter((i) => i.status === 'queued' || i.status === 'conflict').length > 1;
    const buttons = [{ label: 'Skip', value: 'skip' }];
    if (many) {
      buttons.push({ label: 'Skip all', value: 'skip-all' }, { label: 'Replace all', value: 'replace-all', testid: 'replace-all' });
    }
    buttons.push({ label: 'Replace', value: 'replace', kind: 'danger' });
    choice = (await ask({
      title: 'A file with this name exists',
      message: `${target} exists already. Replace it with the file you are uploading, or skip this one?`,
      testid: 'conflict-dialog', buttons,
    })) || 'skip';
    if (choice.endsWith('-all')) {
      choice = choice.slice(0, -4);
      conflictPolicy = choice;
    }
  }
  if (choice === 'replace') {
    update(it, { status: 'queued', overwrite: true, sent: 0 });
  } else {
    update(it, { status: 'skipped' });
  }
  finished(it);
}

export function pause(it) {
  if (it.upload && it.status === 'uploading') {
    it.upload.abort(false);
    update(it, { status: 'paused' });
    pump();
  }
}

export function resume(it) {
  if (it.status === 'paused' || it.status === 'error') {
    update(it, { status: 'queued' });
    pump();
  }
}

export function cancel(it) {
  if (it.upload && (it.status === 'uploading' || it.status === 'paused' || it.status === 'error')) {
    it.upload.abort(true).catch(() => {});
  }
  items = items.filter((i) => i !== it);
  emit();
  pump();
}

function clearDone() {
  items = items.filter((i) => !['done', 'skipped'].includes(i.status));
  emit();
}

const STATUS = {
  queued: 'Waiting', uploading: 'Uploading', paused: 'Paused', done: 'Done', error: 'Failed', conflict: 'Exists', skipped: 'Skipped',
};

/** UploadPanel shows the queue in a corner while there is one. */
export function UploadPanel() {
  const list = useUploads();
  const [open, setOpen] = useState(true);
  if (!list.length) return null;
  const total = list.reduce((a, i) => a + (i.status === 'skipped' ? 0 : i.total), 0);
  const sent = list.reduce((a, i) => a + (i.status === 'skipped' ? 0 : i.sent), 0);
  const active = list.filter((i) => i.status === 'uploading' || i.status === 'queued').length;
  const failed = list.filter((i) => i.status === 'error').length;
  const paused = list.filter((i) => i.status === 'paused').length;
  const allPaused = list.every((i) => i.status !== 'uploading' && i.status !== 'queued');
  return (
    <section class="uploads card" data-testid="upload-panel" aria-label="Uploads">
      <header class="uploads-head">
        <strong>{active ? `Uploading ${active} file${active > 1 ? 's' : ''}` : failed ? `${failed} upload${failed > 1 ? 's' : ''} failed`
          : paused ? `${paused} upload${paused > 1 ? 's' : ''} paused` : 'Uploads done'}</strong>
        <span class="muted" data-testid="upload-total">{fmtSize(sent)} / {fmtSize(total)}</span>
        {!allPaused && <button class="btn btn-small" data-testid="upload-pause-all" onClick={() => list.forEach(pause)}>Pause all</button>}
        {list.some((i) => i.status === 'paused' || i.status === 'error') && (
          <button class="btn btn-small" data-testid="upload-resume-all" onClick={() => list.forEach(resume)}>Resume all</button>
        )}
        <button class="icon-btn" aria-label={open ? 'Collapse' : 'Expand'} onClick={() => setOpen(!open)}><Icon name={open ? 'down' : 'up'} size={16} /></button>
        {allPaused && !list.some((i) => i.status === 'paused') && (
          <button class="icon-btn" aria-label="Close" data-testid="upload-clear" onClick={clearDone}><Icon name="close" size={16} /></button>
        )}
      </header>
      <Progress value={sent} max={total || 1} label="Total upload progress" />
      {open && (
        <ul class="uploads-list">
          {list.map((it) => (
            <li key={it.id} data-testid="upload-item" data-name={it.name} data-status={it.status}>
              <div class="upload-line">
                <span class="upload-name" title={it.name}>{it.name}</span>
                <span class={`muted status-${it.status}`}>
                  {STATUS[it.status]}{it.status === 'uploading' || it.status === 'paused' ? ` ${Math.floor((it.sent / (it.total || 1)) * 100)}%` : ''}
                </span>
                {it.status === 'uploading' && <button class="icon-btn" title="Pause" aria-label="Pause" data-testid="upload-pause" onClick={() => pause(it)}><Icon name="pause" size={14} /></button>}
                {(it.status === 'paused' || it.status === 'error') && <button class="icon-btn" title="Resume" aria-label="Resume" data-testid="upload-resume" onClick={() => resume(it)}><Icon name="play" size={14} /></button>}
                {it.status !== 'done' && it.status !== 'skipped' && <button class="icon-btn" title="Cancel" aria-label="Cancel" data-testid="upload-cancel" onClick={() => cancel(it)}><Icon name="close" size={14} /></button>}
              </div>
              {(it.status === 'uploading' || it.status === 'paused') && <Progress value={it.sent} max={it.total || 1} label={`Upload of ${it.name}`} />}
              {it.error && <div class="upload-error">{it.error}</div>}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/**
 * filesFromDrop walks a drop's items, folders included, into
 * [{file, relativePath}].
 */
export async function filesFromDrop(dt) {
  const entries = [];
  for (const item of dt.items || []) {
    if (item.kind !== 'file') continue;
    const e = item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
    if (e) entries.push(e);
    else {
      const f = item.getAsFile();
      if (f) entries.push(f);
    }
  }
  if (!entries.length && dt.files) return [...dt.files].map((file) => ({ file, relativePath: '' }));
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry instanceof File) {
      out.push({ file: entry, relativePath: '' });
    } else if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, relativePath: prefix ? prefix + file.name : '' });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      const p = prefix + entry.name + '/';
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const c of batch) await walk(c, p);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  if (!out.length) toast('Nothing to upload: empty folders are not uploaded.', { kind: 'info' });
  return out;
}
