// Views that update themselves: refresh every few seconds while the view is shown and the tab
// visible; a view's AbortSignal ends its refreshes when the user navigates away.

export const REFRESH_MS = 2000;

/**
 * Call `refresh()` now and then `everyMs` after each call has finished (never two at once),
 * until `signal` aborts. A hidden tab is refreshed when it is shown again.
 */
export function every(everyMs, refresh, signal) {
  let timer = null;
  let running = false;
  const tick = async () => {
    timer = null;
    if (signal.aborted || running || document.hidden) return; // hidden: resumed when shown
    running = true;
    try {
      await refresh();
    } catch (error) {
      console.warn("refresh failed", error); // the view shows what it could not load
    } finally {
      running = false;
      if (!signal.aborted && !document.hidden) timer = setTimeout(tick, everyMs);
    }
  };
  const onVisible = () => {
    if (!document.hidden && timer === null) tick();
  };
  document.addEventListener("visibilitychange", onVisible);
  signal.addEventListener("abort", () => {
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisible);
  });
  tick();
}
