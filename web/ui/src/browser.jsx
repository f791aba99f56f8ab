// The file browser: breadcrumbs, a virtualized list (or thumbnail grid)
// that stays fast at tens of thousands of entries, sort, filter, search in
// subfolders, multi-select, drag-and-drop upload and the file operations.
import { Icon } from './icons.jsx';
import { useCallback, useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, urls } from './api.js';
import { ask, confirmDialog, prompt, Spinner, toast, toastError } from './ui.jsx';
import { addUploads, filesFromDrop } from './upload.jsx';
import { Viewer } from './viewer.jsx';
import { shareDialog } from './shares.jsx';
import { showShortcuts } from './app.jsx';
import { base, filesHash, fmtSize, fmtTime, hasThumb, iconOf, join, parent, validName, viewerOf } from './util.js';

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function sortEntries(list, key, asc) {
  const dirFirst = (a, b) => (a.kind === 'dir' ? 0 : 1) - (b.kind === 'dir' ? 0 : 1);
  let cmp;
  if (key === 'size') cmp = (a, b) => a.size - b.size || collator.compare(a.name, b.name);
  else if (key === 'mtime') cmp = (a, b) => (a.mtime < b.mtime ? -1 : a.mtime > b.mtime ? 1 : 0) || collator.compare(a.name, b.name);
  else cmp = (a, b) => collator.compare(a.name, b.name);
  const sign = asc ? 1 : -1;
  return [...list].sort((a, b) => dirFirst(a, b) || sign * cmp(a, b));
}

function loadPref(k, d) {
  try {
    return localStorage.getItem(k) || d;
  } catch {
    return d;
  }
}

function savePref(k, v) {
  try {
    localStorage.setItem(k, v);
  } catch { /* private mode */ }
}

/** download makes the browser save url (an attachment answer). */
export function download(url) {
  const a = document.createElement('a');
  a.href = url;
  a.download = '';
  document.body.appendChild(a);
  a.click();
  a.remove();
}

export function Browser({ path }) {
  const [dir, setDir] = useState(null);
  const [entries, setEntries] = useState([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState(null);
  const [opened, setOpened] = useState(null);
  const [sortKey, setSortKey] = useState(() => loadPref('qsfs-sort', 'name'));
  const [asc, setAsc] = useState(() => loadPref('qsfs-asc', '1') === '1');
  const [filter, setFilter] = useState('');
  const [search, setSearch] = useState(null); // {term, entries, truncated, loading}
  const [selected, setSelected] = useState(() => new Set());
  const [cursor, setCursor] = useState(-1);
  const [anchor, setAnchor] = useState(-1);
  const [view, setView] = useState(() => loadPref('qsfs-view', 'list'));
  const [dragging, setDragging] = useState(false);
  const [menu, setMenu] = useState(null); // {x, y}
  const [busy, setBusy] = useState('');
  const filterRef = useRef();
  const fileInput = useRef();
  const folderInput = useRef();
  const dirRef = useRef(dir);
  dirRef.current = dir;

  const load = useCallback(async (d, keep) => {
    if (!keep) setLoading(true);
    try {
      const res = await api.list(d);
      setEntries(res.entries || []);
      setError(null);
    } catch (e) {
      if (e.status === 401) return;
      setError(e);
      setEntries([]);
    } finally {
      setLoading(false);
    }
  }, []);

  // The route's path is a folder, or a file to open inside its folder.
  useEffect(() => {
    let live = true;
    (async () => {
      let info;
      try {
        info = path === '/' ? { kind: 'dir', path: '/', name: '/' } : await api.stat(path);
      } catch (e) {
        if (!live || e.status === 401) return;
        setDir(path);
        setError(e);
        setEntries([]);
        setLoading(false);
        return;
      }
      if (!live) return;
      const d = info.kind === 'dir' ? path : parent(path);
      setOpened(info.kind === 'dir' ? null : info);
      if (d !== dirRef.current) {
        setDir(d);
        setFilter('');
        setSearch(null);
        setSelected(new Set());
        setCursor(-1);
        await load(d);
      }
    })();
    return () => {
      live = false;
    };
  }, [path]);

  // Reload when uploads finish, when the tab comes back into view (others
  // may have changed the folder meanwhile) and on the Files link.
  useEffect(() => {
    const f = () => dirRef.current && load(dirRef.current, true);
    const vis = () => document.visibilityState === 'visible' && f();
    window.addEventListener('qsfs-uploaded', f);
    window.addEventListener('qsfs-refresh', f);
    document.addEventListener('visibilitychange', vis);
    return () => {
      window.removeEventListener('qsfs-uploaded', f);
      window.removeEventListener('qsfs-refresh', f);
      document.removeEventListener('visibilitychange', vis);
    };
  }, []);

  const rows = useMemo(() => {
    if (search) return search.entries;
    const f = filter.trim().toLowerCase();
    const list = f ? entries.filter((e) => e.name.toLowerCase().includes(f)) : entries;
    return sortEntries(list, sortKey, asc);
  }, [entries, filter, sortKey, asc, search]);

  const sel = rows.filter((r) => selected.has(r.path));
  const reload = () => load(dir, true);

  const go = (p) => {
    location.hash = filesHash(p);
  };
  const open = (e) => go(e.path);

  const setSort = (k) => {
    if (k === sortKey) {
      setAsc(!asc);
      savePref('qsfs-asc', asc ? '0' : '1');
    } else {
      setSortKey(k);
      setAsc(true);
      savePref('qsfs-sort', k);
      savePref('qsfs-asc', '1');
    }
  };

  const clickRow = (e, i) => {
    const r = rows[i];
    setCursor(i);
    if (e.shiftKey && anchor >= 0) {
      const [a, b] = anchor < i ? [anchor, i] : [i, anchor];
      const s = e.ctrlKey || e.metaKey ? new Set(selected) : new Set();
      for (let k = a; k <= b; k++) s.add(rows[k].path);
      setSelected(s);
      return;
    }
    setAnchor(i);
    if (e.ctrlKey || e.metaKey) {
      const s = new Set(selected);
      if (s.has(r.path)) s.delete(r.path);
      else s.add(r.path);
      setSelected(s);
    } else {
      setSelected(new Set([r.path]));
    }
  };
  const toggleRow = (i) => {
    const r = rows[i];
    const s = new Set(selected);
    if (s.has(r.path)) s.delete(r.path);
    else s.add(r.path);
    setSelected(s);
    setAnchor(i);
    setCursor(i);
  };

  // Operations.
  const run = async (label, fn) => {
    setBusy(label);
    try {
      return await fn();
    } finally {
      setBusy('');
    }
  };

  const newFolder = async () => {
    const name = await prompt('New folder', 'Name', 'New folder', undefined, 'new-folder-dialog', 'Create');
    if (name == null) return;
    const bad = validName(name);
    if (bad) return toast(bad, { kind: 'error' });
    try {
      const e = await api.mkdir(join(dir, name));
      await reload();
      setSelected(new Set([e.path]));
      toast(`Folder ${name} created.`, { kind: 'ok' });
    } catch (e) {
      toastError(`Cannot create ${name}`, e);
    }
  };

  const newFile = async () => {
    const name = await prompt('New file', 'Name (the extension picks the editor mode)', 'untitled.md', [0, 8], 'new-file-dialog', 'Create');
    if (name == null) return;
    const bad = validName(name);
    if (bad) return toast(bad, { kind: 'error' });
    try {
      const e = await api.newFile(join(dir, name));
      await reload();
      open(e);
    } catch (e) {
      toastError(`Cannot create ${name}`, e);
    }
  };

  const rename = async (target) => {
    const r = target || sel[0];
    if (!r) return toast('Select the file or folder to rename first.');
    const dot = r.kind === 'dir' ? -1 : r.name.lastIndexOf('.');
    const name = await prompt(`Rename ${r.name}`, 'New name', r.name, [0, dot > 0 ? dot : r.name.length], 'rename-dialog', 'Rename');
    if (name == null || name === r.name) return;
    const bad = validName(name);
    if (bad) return toast(bad, { kind: 'error' });
    try {
      const e = await api.move(r.path, join(parent(r.path), name), false);
      await reload();
      setSelected(new Set([e.path]));
    } catch (e) {
      toastError(`Cannot rename ${r.name}`, e);
    }
  };

  const transfer = async (op, targets) => {
    const list = targets || sel;
    if (!list.length) return toast(`Select what to ${op} first.`);
    const dest = await pickFolder(op === 'move' ? 'Move to…' : 'Copy to…', dir, op === 'move' ? 'Move here' : 'Copy here');
    if (dest == null) return;
    let done = 0;
    let overwriteAll = false;
    await run(op === 'move' ? 'Moving…' : 'Copying…', async () => {
      for (const r of list) {
        const to = join(dest, r.name);
        if (to === r.path) continue;
        try {
          await api[op](r.path, to, overwriteAll);
          done++;
        } catch (e) {
          if (e.status === 409) {
            const c = await ask({
              title: 'The name is taken', message: `${to} exists. Replace it?`, testid: 'overwrite-dialog',
              buttons: [{ label: 'Skip', value: 'skip' }, { label: 'Replace all', value: 'all' }, { label: 'Replace', value: 'replace', kind: 'danger' }],
            });
            if (c === 'replace' || c === 'all') {
              if (c === 'all') overwriteAll = true;
              try {
                await api[op](r.path, to, true);
                done++;
              } catch (e2) {
                toastError(`Cannot ${op} ${r.name}`, e2);
              }
            }
          } else toastError(`Cannot ${op} ${r.name}`, e);
        }
      }
    });
    await reload();
    if (done) toast(`${op === 'move' ? 'Moved' : 'Copied'} ${done} item${done > 1 ? 's' : ''} to ${dest}.`, { kind: 'ok' });
  };

  const remove = async (targets) => {
    const list = targets || sel;
    if (!list.length) return toast('Select what to delete first.');
    try {
      const res = await run('Moving to the trash…', () => api.remove(list.map((r) => r.path)));
      const ids = (res.trashed || []).map((t) => t.id);
      setSelected(new Set());
      await reload();
      const what = list.length === 1 ? list[0].name : `${list.length} items`;
      // Restored from the trash page meanwhile: the Undo has nothing left to do.
      const restored = (e) => {
        if (e.detail.some((id) => ids.includes(id))) {
          closeToast();
          window.removeEventListener('qsfs-restored', restored);
        }
      };
      window.addEventListener('qsfs-restored', restored);
      setTimeout(() => window.removeEventListener('qsfs-restored', restored), 11000);
      const closeToast = toast(`${what} moved to the trash.`, {
        kind: 'ok', timeout: 10000,
        action: {
          label: 'Undo',
          run: async () => {
            try {
              await api.restore(ids);
              await load(dirRef.current, true);
              toast(`${what} restored.`, { kind: 'ok' });
            } catch (e) {
              toastError('Cannot restore', e);
            }
          },
        },
      });
    } catch (e) {
      toastError('Cannot delete', e);
    }
  };

  const downloadSel = (targets) => {
    const list = targets || sel;
    if (!list.length) return download(urls.zip([dir]));
    if (list.length === 1) return download(urls.download(list[0].path));
    download(urls.zip(list.map((r) => r.path)));
  };

  const share = (target) => {
    const r = target || sel[0] || (dir !== '/' ? { path: dir, name: base(dir), kind: 'dir' } : null);
    if (!r) return toast('Select what to share first.');
    shareDialog(r);
  };

  const runSearch = async () => {
    const term = filter.trim();
    if (!term) return;
    setSearch({ term, entries: [], loading: true });
    try {
      const res = await api.search(dir, term);
      setSearch({ term, entries: res.entries || [], truncated: res.truncated, loading: false });
      setSelected(new Set());
      setCursor(-1);
    } catch (e) {
      setSearch(null);
      toastError('Search failed', e);
    }
  };

  // Keyboard shortcuts (not while typing, nor under a dialog or viewer).
  useEffect(() => {
    const onKey = (e) => {
      if (opened || document.querySelector('.backdrop')) return;
      const t = e.target;
      const typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
      if (typing) {
        if (e.key === 'Escape' && t === filterRef.current) {
          setFilter('');
          setSearch(null);
          t.blur();
        }
        return;
      }
      if (e.altKey) return;
      const mod = e.ctrlKey || e.metaKey;
      const k = e.key;
      const cur = rows[cursor];
      if (k === '/' && !mod) {
        e.preventDefault();
        filterRef.current && filterRef.current.focus();
      } else if (k === '?') {
        e.preventDefault();
        showShortcuts();
      } else if (k === 'n' && !mod) {
        e.preventDefault();
        newFile();
      } else if (k === 'N' && !mod) {
        e.preventDefault();
        newFolder();
      } else if (k === 'F2') {
        e.preventDefault();
        rename(sel[0] || cur);
      } else if (k === 'Delete') {
        e.preventDefault();
        remove(sel.length ? sel : cur ? [cur] : []);
      } else if (k === 'Enter') {
        const r = cur || sel[0];
        if (r) {
          e.preventDefault();
          open(r);
        }
      } else if (k === 'Backspace') {
        e.preventDefault();
        if (search) setSearch(null);
        else if (dir !== '/') go(parent(dir));
      } else if (k === 'a' && mod) {
        e.preventDefault();
        setSelected(new Set(rows.map((r) => r.path)));
      } else if (k === 'Escape') {
        setSelected(new Set());
        setMenu(null);
      } else if (k === 'ArrowDown' || k === 'ArrowUp') {
        e.preventDefault();
        if (!rows.length) return;
        const step = view === 'grid' ? gridCols.current : 1;
        const n = Math.max(0, Math.min(rows.length - 1, cursor < 0 ? 0 : cursor + (k === 'ArrowDown' ? step : -step)));
        setCursor(n);
        if (e.shiftKey) {
          const s = new Set(selected);
          s.add(rows[n].path);
          setSelected(s);
        } else {
          setSelected(new Set([rows[n].path]));
          setAnchor(n);
        }
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  });

  const gridCols = useRef(1);

  const onDrop = async (e) => {
    e.preventDefault();
    setDragging(false);
    if (!e.dataTransfer) return;
    const files = await filesFromDrop(e.dataTransfer);
    if (files.length) addUploads(dir, files);
  };

  if (dir === null) return <Spinner />;

  const crumbs = dir === '/' ? [] : dir.slice(1).split('/');
  const actions = [
    { id: 'download', label: sel.length ? 'Download' : 'Download all', icon: 'download', run: () => downloadSel(), need: 0 },
    { id: 'share', label: 'Share', icon: 'link', run: () => share(), need: 1, max: 1 },
    { id: 'rename', label: 'Rename', icon: 'edit', run: () => rename(), need: 1, max: 1 },
    { id: 'move', label: 'Move', icon: 'move', run: () => transfer('move'), need: 1 },
    { id: 'copy', label: 'Copy', icon: 'copy', run: () => transfer('copy'), need: 1 },
    { id: 'delete', label: 'Delete', icon: 'trash', run: () => remove(), need: 1, danger: true },
  ].filter((a) => sel.length >= a.need && (!a.max || sel.length <= a.max));

  return (
    <div
      class={`browser ${dragging ? 'dragging' : ''}`}
      onDragOver={(e) => {
        if (e.dataTransfer && [...e.dataTransfer.types].includes('Files')) {
          e.preventDefault();
          e.dataTransfer.dropEffect = 'copy';
          setDragging(true);
        }
      }}
      onDragLeave={(e) => {
        if (!e.currentTarget.contains(e.relatedTarget)) setDragging(false);
      }}
      onDrop={onDrop}
      data-testid="browser"
      data-path={dir}
    >
      <div class="toolbar">
        <nav class="crumbs" aria-label="Breadcrumbs" data-testid="breadcrumbs">
          <a href={filesHash('/')} data-testid="crumb" data-path="/">Files</a>
          {crumbs.map((c, i) => {
            const p = '/' + crumbs.slice(0, i + 1).join('/');
            return (
              <span key={p}>
                <span class="crumb-sep">/</span>
                <a href={filesHash(p)} data-testid="crumb" data-path={p}>{c}</a>
              </span>
            );
          })}
        </nav>
        <div class="tools">
          <button class="btn btn-primary" data-testid="btn-upload" onClick={() => fileInput.current.click()} title="Upload files"><Icon name="upload" /><span class="hide-narrow">Upload</span></button>
          <button class="btn" data-testid="btn-upload-folder" onClick={() => folderInput.current.click()} title="Upload a folder"><Icon name="folderUp" /><span class="hide-narrow">Folder</span></button>
          <button class="btn" data-testid="btn-new-folder" onClick={newFolder} title="New folder (Shift+N)"><Icon name="newFolder" /><span class="hide-narrow">New folder</span></button>
          <button class="btn" data-testid="btn-new-file" onClick={newFile} title="New file (n)"><Icon name="newFile" /><span class="hide-narrow">New file</span></button>
          <button class="btn" data-testid="btn-refresh" onClick={reload} title="Reload the folder" aria-label="Reload the folder"><Icon name="refresh" /></button>
          <button class="btn" data-testid="btn-view-toggle" onClick={() => {
            const v = view === 'grid' ? 'list' : 'grid';
            setView(v);
            savePref('qsfs-view', v);
          }} title={view === 'grid' ? 'Show as a list' : 'Show thumbnails'} aria-label="Toggle grid view"><Icon name={view === 'grid' ? 'list' : 'grid'} /></button>
          <input ref={fileInput} type="file" multiple hidden data-testid="upload-input" onChange={(e) => {
            const fs = [...e.currentTarget.files];
            e.currentTarget.value = '';
            if (fs.length) addUploads(dir, fs);
          }} />
          <input ref={folderInput} type="file" multiple webkitdirectory hidden data-testid="upload-folder-input" onChange={(e) => {
            const fs = [...e.currentTarget.files];
            e.currentTarget.value = '';
            if (fs.length) addUploads(dir, fs);
          }} />
        </div>
      </div>
      <div class="toolbar toolbar2">
        <div class="filter">
          <input
            ref={filterRef} type="search" placeholder="Filter this folder  ( / )" aria-label="Filter" data-testid="filter" value={filter}
            onInput={(e) => {
              setFilter(e.currentTarget.value);
              if (search) setSearch(null);
            }}
            onKeyDown={(e) => {
              if (e.key === 'Enter') {
                e.preventDefault();
                runSearch();
              }
            }}
          />
          {filter.trim() && !search && (
            <button class="btn btn-small" data-testid="search-all" onClick={runSearch} title="Search this folder and all its subfolders (Enter)">Search subfolders</button>
          )}
          {search && (
            <button class="btn btn-small" data-testid="search-clear" onClick={() => setSearch(null)}>× Results for “{search.term}”</button>
          )}
        </div>
        <div class="sel-actions">
          {sel.length > 0 && <span class="muted" data-testid="selection-count">{sel.length} selected</span>}
          <span class="wide-actions">
            {actions.map((a) => (
              <button key={a.id} class={`btn btn-small ${a.danger ? 'btn-danger-soft' : ''}`} data-testid={`btn-${a.id}`} onClick={a.run} title={a.label}>
                <Icon name={a.icon} size={16} /><span class="hide-narrow">{a.label}</span>
              </button>
            ))}
          </span>
          <button class="btn btn-small narrow-only" data-testid="btn-actions" aria-label="Actions" onClick={(e) => {
            const r = e.currentTarget.getBoundingClientRect();
            setMenu({ x: r.right, y: r.bottom, items: actions });
          }}><Icon name="more" /></button>
        </div>
      </div>
      {busy && <div class="busy-line" data-testid="busy"><span class="spinner" />{busy}</div>}
      {search && search.loading && <Spinner label="Searching…" />}
      {search && search.truncated && <div class="note">Showing the first {search.entries.length} matches: refine the search to see the rest.</div>}
      {error ? (
        <div class="empty" data-testid="list-error">
          <p>{error.status === 404 ? 'This folder does not exist (any more).' : error.message}</p>
          <a class="btn" href={filesHash('/')}>Go to the top folder</a>
        </div>
      ) : loading ? (
        <Spinner />
      ) : (
        <Listing
          rows={rows} view={view} selected={selected} cursor={cursor} searchMode={!!search} sortKey={sortKey} asc={asc}
          setSort={setSort} clickRow={clickRow} toggleRow={toggleRow} open={open} gridCols={gridCols}
          onMenu={(i, x, y) => {
            const r = rows[i];
            if (!selected.has(r.path)) setSelected(new Set([r.path]));
            setCursor(i);
            const one = [r];
            setMenu({
              x, y,
              items: [
                { id: 'open', label: 'Open', icon: 'open', run: () => open(r) },
                { id: 'download', label: 'Download', icon: 'download', run: () => downloadSel(one) },
                { id: 'share', label: 'Share', icon: 'link', run: () => share(r) },
                { id: 'rename', label: 'Rename', icon: 'edit', run: () => rename(r) },
                { id: 'move', label: 'Move', icon: 'move', run: () => transfer('move', one) },
                { id: 'copy', label: 'Copy', icon: 'copy', run: () => transfer('copy', one) },
                { id: 'delete', label: 'Delete', icon: 'trash', run: () => remove(one), danger: true },
              ],
            });
          }}
          empty={filter ? (search ? 'Nothing found in the subfolders.' : 'Nothing here matches the filter: press Enter to search the subfolders.') : 'This folder is empty: drop files here or use Upload.'}
        />
      )}
      {dragging && <div class="drop-hint" data-testid="drop-hint">Drop files or folders to upload them to {dir}</div>}
      {menu && <Menu menu={menu} close={() => setMenu(null)} />}
      {opened && (
        <Viewer
          entry={opened}
          siblings={rows.filter((r) => r.kind !== 'dir')}
          onClose={() => go(dir)}
          onOpen={open}
          onSaved={reload}
        />
      )}
    </div>
  );
}

function Menu({ menu, close }) {
  useEffect(() => {
    const f = (e) => {
      if (!e.target.closest || !e.target.closest('.menu')) close();
    };
    const k = (e) => e.key === 'Escape' && close();
    setTimeout(() => window.addEventListener('pointerdown', f), 0);
    window.addEventListener('keydown', k);
    return () => {
      window.removeEventListener('pointerdown', f);
      window.removeEventListener('keydown', k);
    };
  }, []);
  const left = Math.max(8, Math.min(menu.x - 180, window.innerWidth - 196));
  const top = Math.min(menu.y, window.innerHeight - 40 * menu.items.length - 16);
  return (
    <div class="menu card" role="menu" data-testid="menu" style={{ left: left + 'px', top: Math.max(8, top) + 'px' }}>
      {menu.items.length === 0 && <div class="muted menu-empty">Select files first</div>}
      {menu.items.map((a) => (
        <button key={a.id} role="menuitem" class={`menu-item ${a.danger ? 'danger' : ''}`} data-testid={`menu-${a.id}`} onClick={() => {
          close();
          a.run();
        }}>
          <span class="menu-icon"><Icon name={a.icon} size={16} /></span>{a.label}
        </button>
      ))}
    </div>
  );
}

const ROW_H = 44;
const ROW_H_NARROW = 56; // phones: name over size and date
const TILE_W = 160;
const TILE_H = 184;

/** Listing renders only the rows in view (plus a margin). */
function Listing({ rows, view, selected, cursor, searchMode, sortKey, asc, setSort, clickRow, toggleRow, open, onMenu, empty, gridCols }) {
  const scroller = useRef();
  const [box, setBox] = useState({ top: 0, h: 600, w: 800 });
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    const measure = () => setBox({ top: el.scrollTop, h: el.clientHeight, w: el.clientWidth });
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, [view, rows.length === 0]);

  const grid = view === 'grid';
  const cols = grid ? Math.max(2, Math.floor(box.w / TILE_W)) : 1;
  gridCols.current = cols;
  const narrow = window.innerWidth <= 760;
  const listH = narrow ? ROW_H_NARROW : ROW_H;
  const rowH = grid ? TILE_H : listH;
  const lines = Math.ceil(rows.length / cols);

  // Keep the cursor in view.
  useEffect(() => {
    const el = scroller.current;
    if (!el || cursor < 0) return;
    const line = Math.floor(cursor / cols);
    const y = line * rowH;
    if (y < el.scrollTop) el.scrollTop = y;
    else if (y + rowH > el.scrollTop + el.clientHeight) el.scrollTop = y + rowH - el.clientHeight;
  }, [cursor]);

  if (!rows.length) return <div class="empty" data-testid="empty">{empty}</div>;

  const first = Math.max(0, Math.floor(box.top / rowH) - 4);
  const last = Math.min(lines, Math.ceil((box.top + box.h) / rowH) + 4);
  const items = [];
  for (let line = first; line < last; line++) {
    for (let c = 0; c < cols; c++) {
      const i = line * cols + c;
      if (i >= rows.length) break;
      const r = rows[i];
      const props = {
        key: r.path, r, i, sel: selected.has(r.path), cur: i === cursor, searchMode, clickRow, toggleRow, open, onMenu,
        style: grid
          ? { top: line * TILE_H + 'px', left: (c * 100) / cols + '%', width: 100 / cols + '%', height: TILE_H + 'px' }
          : { top: line * listH + 'px', height: listH + 'px' },
      };
      items.push(grid ? <Tile {...props} /> : <Row {...props} />);
    }
  }
  const arrow = (k) => (sortKey === k ? (asc ? ' ▲' : ' ▼') : '');
  return (
    <div class={`listing ${grid ? 'grid' : 'list'}`}>
      {!grid && (
        <div class="list-head" role="row">
          <span class="col-check" />
          <button class="col-name" data-testid="sort-name" onClick={() => setSort('name')}>Name{arrow('name')}</button>
          <button class="col-size" data-testid="sort-size" onClick={() => setSort('size')}>Size{arrow('size')}</button>
          <button class="col-mtime" data-testid="sort-mtime" onClick={() => setSort('mtime')}>Modified{arrow('mtime')}</button>
          <span class="col-more" />
        </div>
      )}
      <div
        class="scroller" ref={scroller} data-testid="list" data-count={rows.length}
        onScroll={(e) => setBox({ top: e.currentTarget.scrollTop, h: e.currentTarget.clientHeight, w: e.currentTarget.clientWidth })}
      >
        <div class="scroller-inner" style={{ height: lines * rowH + 'px' }} role="grid" aria-rowcount={rows.length}>{items}</div>
      </div>
    </div>
  );
}

function rowHandlers(r, i, clickRow, open, onMenu) {
  return {
    onClick: (e) => clickRow(e, i),
    onDblClick: () => open(r),
    onContextMenu: (e) => {
      e.preventDefault();
      onMenu(i, e.clientX + 180, e.clientY);
    },
  };
}

function Row({ r, i, sel, cur, searchMode, clickRow, toggleRow, open, onMenu, style }) {
  return (
    <div
      class={`row ${sel ? 'selected' : ''} ${cur ? 'cursor' : ''}`} style={style} role="row" aria-selected={sel}
      data-testid="row" data-name={r.name} data-path={r.path} data-kind={r.kind}
      {...rowHandlers(r, i, clickRow, open, onMenu)}
    >
      <span class="col-check">
        <input type="checkbox" checked={sel} aria-label={`Select ${r.name}`} data-testid="row-check"
          onClick={(e) => {
            e.stopPropagation();
            toggleRow(i);
          }} />
      </span>
      <span class="col-name">
        <span class={`icon icon-${iconOf(r)}`}><Icon name={iconOf(r)} size={20} /></span>
        <span class="name-wrap">
          <a
            class="name" href={filesHash(r.path)} data-testid="row-open"
            onClick={(e) => {
              if (e.ctrlKey || e.metaKey || e.shiftKey) {
                e.preventDefault();
                return;
              }
              e.stopPropagation();
            }}
          >{r.name}</a>
          {r.remote === true && <span class="badge" data-testid="badge-remote" title="Stored on the backends only: opening it fetches it">remote-only</span>}
          {searchMode && <span class="in-folder muted small" data-testid="row-folder">in {parent(r.path)}</span>}
          <span class="sub">
            <span class="sub-meta">{r.kind === 'dir' ? 'Folder' : fmtSize(r.size)} · {fmtTime(r.mtime)}</span>
          </span>
        </span>
      </span>
      <span class="col-size">{r.kind === 'dir' ? '—' : fmtSize(r.size)}</span>
      <span class="col-mtime">{fmtTime(r.mtime)}</span>
      <span class="col-more">
        <button class="icon-btn" aria-label={`Actions for ${r.name}`} data-testid="row-menu" onClick={(e) => {
          e.stopPropagation();
          const b = e.currentTarget.getBoundingClientRect();
          onMenu(i, b.right, b.bottom);
        }}><Icon name="more" /></button>
      </span>
    </div>
  );
}

function Tile({ r, i, sel, cur, clickRow, toggleRow, open, onMenu, style }) {
  const [broken, setBroken] = useState(false);
  const thumb = r.kind === 'file' && hasThumb(r.name) && !broken;
  return (
    <div
      class={`tile ${sel ? 'selected' : ''} ${cur ? 'cursor' : ''}`} style={style} role="gridcell" aria-selected={sel}
      data-testid="row" data-name={r.name} data-path={r.path} data-kind={r.kind}
      {...rowHandlers(r, i, clickRow, open, onMenu)}
    >
      <input type="checkbox" class="tile-check" checked={sel} aria-label={`Select ${r.name}`} data-testid="row-check"
        onClick={(e) => {
          e.stopPropagation();
          toggleRow(i);
        }} />
      <a class="tile-img" href={filesHash(r.path)} data-testid="row-open" onClick={(e) => e.stopPropagation()}>
        {thumb
          ? <img src={urls.thumb(r.path, 256)} alt="" loading="lazy" decoding="async" data-testid="thumb" onError={() => setBroken(true)} />
          : <span class={`tile-icon icon-${iconOf(r)}`}><Icon name={iconOf(r)} size={48} /></span>}
      </a>
      <div class="tile-name" title={r.name}>{r.name}</div>
      {r.remote === true && <span class="badge" data-testid="badge-remote">remote-only</span>}
    </div>
  );
}

/** pickFolder shows a folder tree picker and resolves with a path or null. */
export function pickFolder(title, start, okLabel) {
  const chosen = { path: start };
  return ask({
    title, testid: 'folder-picker',
    body: <FolderPicker start={start} chosen={chosen} />,
    buttons: [{ label: 'Cancel', value: null }, { label: okLabel, value: 'ok', kind: 'primary', testid: 'pick' }],
  }).then((v) => (v === 'ok' ? chosen.path : null));
}

function FolderPicker({ start, chosen }) {
  const [at, setAt] = useState(start);
  const [dirs, setDirs] = useState(null);
  const [err, setErr] = useState('');
  useEffect(() => {
    chosen.path = at;
    setDirs(null);
    api.list(at).then(
      (r) => setDirs(sortEntries((r.entries || []).filter((e) => e.kind === 'dir'), 'name', true)),
      (e) => {
        setErr(e.message);
        setDirs([]);
      },
    );
  }, [at]);
  const crumbs = at === '/' ? [] : at.slice(1).split('/');
  return (
    <div class="picker">
      <div class="crumbs">
        <button type="button" class="link" onClick={() => setAt('/')}>Files</button>
        {crumbs.map((c, i) => (
          <span key={i}><span class="crumb-sep">/</span>
            <button type="button" class="link" onClick={() => setAt('/' + crumbs.slice(0, i + 1).join('/'))}>{c}</button>
          </span>
        ))}
      </div>
      <div class="picker-list" data-testid="picker-list">
        {dirs === null && <Spinner />}
        {err && <p class="form-error">{err}</p>}
        {dirs && !dirs.length && !err && <p class="muted">No subfolders: pick this one.</p>}
        {dirs && dirs.map((d) => (
          <button type="button" key={d.path} class="picker-item" data-testid="picker-item" data-name={d.name} onClick={() => setAt(d.path)}><Icon name="folder" /> {d.name}</button>
        ))}
      </div>
      <p class="muted">Destination: <strong data-testid="picker-dest">{at}</strong></p>
    </div>
  );
}

export { viewerOf };
