// The trash: what was deleted, restored to where it was, or purged for good.
import { Icon } from './icons.jsx';
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { confirmDialog, Spinner, toast, toastError, useRefresh } from './ui.jsx';
import { filesHash, fmtSize, fmtTime, parent } from './util.js';

export function TrashPage() {
  const [items, setItems] = useState(null);
  const [error, setError] = useState('');
  const [sel, setSel] = useState(() => new Set());
  const [busy, setBusy] = useState(false);
  const load = () => api.trash().then((r) => {
    const list = (r.items || []).sort((a, b) => (a.deleted < b.deleted ? 1 : -1));
    setItems(list);
    setSel((s) => new Set([...s].filter((id) => list.some((i) => i.id === id))));
    setError('');
  }, (e) => setError(e.message));
  useEffect(() => {
    load();
  }, []);
  useRefresh(load);

  const restore = async (ids) => {
    setBusy(true);
    try {
      const r = await api.restore(ids);
      window.dispatchEvent(new CustomEvent('qsfs-restored', { detail: ids }));
      const paths = r.restored || [];
      toast(paths.length === 1 ? `Restored to ${paths[0]}.` : `Restored ${paths.length} items.`, {
        kind: 'ok',
        action: paths.length ? { label: 'Show', run: () => (location.hash = filesHash(parent(paths[0]))) } : undefined,
      });
      await load();
    } catch (e) {
      toastError('Cannot restore', e);
    } finally {
      setBusy(false);
    }
  };
  const purge = async (ids) => {
    const all = !ids;
    const n = all ? items.length : ids.length;
    if (!(await confirmDialog(all ? 'Empty the trash?' : 'Delete for good?',
      `${n} item${n > 1 ? 's' : ''} will be erased for good. This cannot be undone.`, all ? 'Empty the trash' : 'Delete for good', true, 'empty-dialog'))) return;
    setBusy(true);
    try {
      const r = await api.emptyTrash(ids);
      toast(`Erased ${r.purged} item${r.purged === 1 ? '' : 's'}.`, { kind: 'ok' });
      await load();
    } catch (e) {
      toastError('Cannot empty the trash', e);
    } finally {
      setBusy(false);
    }
  };
  const toggle = (id) => {
    const s = new Set(sel);
    if (s.has(id)) s.delete(id);
    else s.add(id);
    setSel(s);
  };
  return (
    <div class="page" data-testid="trash-page">
      <div class="page-head">
        <h1>Trash</h1>
        <span class="spacer" />
        {sel.size > 0 && (
          <>
            <button class="btn" data-testid="trash-restore-selected" disabled={busy} onClick={() => restore([...sel])}>Restore {sel.size}</button>
            <button class="btn btn-danger-soft" data-testid="trash-purge-selected" disabled={busy} onClick={() => purge([...sel])}>Delete {sel.size} for good</button>
          </>
        )}
        <button class="btn btn-danger" data-testid="trash-empty" disabled={busy || !items || !items.length} onClick={() => purge()}>Empty trash</button>
      </div>
      {busy && <div class="busy-line"><span class="spinner" />Working…</div>}
      {error && <p class="form-error">{error}</p>}
      {!items && !error && <Spinner />}
      {items && !items.length && <div class="empty" data-testid="empty">The trash is empty.</div>}
      {items && items.length > 0 && (
        <table class="table">
          <thead><tr><th class="col-check" /><th>Deleted item</th><th class="hide-narrow">Size</th><th>Deleted</th><th /></tr></thead>
          <tbody>
            {items.map((it) => (
              <tr key={it.id} data-testid="trash-row" data-path={it.path} data-id={it.id}>
                <td class="col-check"><input type="checkbox" checked={sel.has(it.id)} onClick={() => toggle(it.id)} aria-label={`Select ${it.path}`} /></td>
                <td><Icon name={it.kind === 'dir' ? 'folder' : 'file'} /> {it.path}</td>
                <td class="hide-narrow">{it.kind === 'dir' ? '—' : fmtSize(it.size)}</td>
                <td>{fmtTime(it.deleted)}</td>
                <td class="actions">
                  <button class="btn btn-small" data-testid="trash-restore" disabled={busy} onClick={() => restore([it.id])}>Restore</button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
