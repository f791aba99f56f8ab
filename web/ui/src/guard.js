// The unsaved-changes guard: the editor registers whether it holds changes;
// navigation inside the app asks before leaving, and the browser's own
// prompt covers reloads and closing the tab.

let dirty = () => false;

/** setGuard registers fn (true: there are unsaved changes); null clears. */
export function setGuard(fn) {
  dirty = fn || (() => false);
}

/** confirmLeave reports whether leaving is fine (asking when it is not). */
export function confirmLeave() {
  if (!dirty()) return true;
  // eslint-disable-next-line no-alert
  const ok = window.confirm('You have unsaved changes. Leave and lose them?');
  if (ok) dirty = () => false;
  return ok;
}

window.addEventListener('beforeunload', (e) => {
  if (dirty()) {
    e.preventDefault();
    e.returnValue = '';
  }
});
