// Small helpers: display paths, sizes, dates and what kind of viewer a
// file name calls for.

export function join(dir, name) {
  return (dir === '/' ? '' : dir) + '/' + name;
}

export function parent(path) {
  if (path === '/' || !path) return '/';
  const i = path.lastIndexOf('/');
  return i <= 0 ? '/' : path.slice(0, i);
}

export function base(path) {
  if (path === '/') return '/';
  return path.slice(path.lastIndexOf('/') + 1);
}

export function ext(name) {
  const i = name.lastIndexOf('.');
  return i > 0 ? name.slice(i + 1).toLowerCase() : '';
}

export function fmtSize(n) {
  if (n == null || isNaN(n)) return '';
  if (n < 1024) return `${n} B`;
  const u = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = -1;
  do {
    v /= 1024;
    i++;
  } while (v >= 1024 && i < u.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}

const dtf = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  if (isNaN(d) || d.getFullYear() < 1971) return '';
  return dtf.format(d);
}

export function fmtAgo(t) {
  if (!t) return 'never';
  const d = new Date(t);
  if (isNaN(d) || d.getFullYear() < 1971) return 'never';
  return fmtDuration((Date.now() - d.getTime()) / 1000) + ' ago';
}

export function fmtDuration(s) {
  if (s == null || isNaN(s)) return '–';
  s = Math.max(0, s);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} d`;
}

const IMAGE = ['png', 'jpg', 'jpeg', 'gif', 'webp', 'avif', 'bmp', 'ico'];
const THUMB = ['png', 'jpg', 'jpeg', 'gif', 'webp'];
const VIDEO = ['mp4', 'webm', 'ogv', 'mov', 'm4v', 'mkv'];
const AUDIO = ['mp3', 'ogg', 'oga', 'opus', 'wav', 'flac', 'm4a', 'aac', 'weba'];
const TEXT = [
  'txt', 'md', 'markdown', 'js', 'mjs', 'cjs', 'jsx', 'ts', 'tsx', 'json', 'py', 'go', 'mod', 'sum', 'html', 'htm',
  'css', 'scss', 'xml', 'svg', 'yml', 'yaml', 'toml', 'ini', 'cfg', 'conf', 'sh', 'bash', 'zsh', 'rs', 'c', 'h', 'cc',
  'cpp', 'hpp', 'java', 'kt', 'rb', 'php', 'sql', 'csv', 'tsv', 'log', 'env', 'lua', 'pl', 'r', 'tex', 'rst',
  'gitignore', 'dockerfile', 'makefile', 'service', 'diff', 'patch',
];
const TEXTNAMES = ['makefile', 'dockerfile', 'readme', 'license', 'authors', 'changelog', '.gitignore', '.env'];

/** viewerOf says how to open a file: image, video, audio, pdf, text or null. */
export function viewerOf(name) {
  const e = ext(name);
  if (IMAGE.includes(e)) return 'image';
  if (VIDEO.includes(e)) return 'video';
  if (AUDIO.includes(e)) return 'audio';
  if (e === 'pdf') return 'pdf';
  if (TEXT.includes(e) || TEXTNAMES.includes(name.toLowerCase())) return 'text';
  if (!e) return 'text';
  return null;
}

export function hasThumb(name) {
  return THUMB.includes(ext(name));
}

export function iconOf(entry) {
  if (entry.kind === 'dir') return '📁';
  switch (viewerOf(entry.name)) {
    case 'image': return '🖼️';
    case 'video': return '🎞️';
    case 'audio': return '🎵';
    case 'pdf': return '📕';
    case 'text': return '📄';
  }
  return '📦';
}

/** validName reports why a new name is refused, or '' when it is fine. */
export function validName(name) {
  if (!name || !name.trim()) return 'Type a name.';
  if (name.includes('/')) return 'A name cannot contain "/".';
  if (name === '.' || name === '..') return 'Choose another name.';
  if (new TextEncoder().encode(name).length > 255) return 'The name is too long (255 bytes at most).';
  return '';
}

/** filesHash and friends: the hash routes of the app. */
export function filesHash(path) {
  return '#/files' + (path === '/' ? '/' : path.split('/').map(encodeURIComponent).join('/'));
}
