// The health dashboard: how safe the data is right now (backends, the
// losses it survives, redundancy, upload queue, live RPO, cache, repair)
// and the same over time, polled every 5 s.
import { useEffect, useState } from 'preact/hooks';
import { api } from './api.js';
import { Progress, Spinner } from './ui.jsx';
import { fmtAgo, fmtDuration, fmtSize, fmtTime } from './util.js';

const POLL = 5000;

/** validTime is false for Go's zero time (an unset time.Time). */
function validTime(t) {
  if (!t) return false;
  const d = new Date(t);
  return !isNaN(d) && d.getFullYear() > 1970;
}

export function HealthPage() {
  const [data, setData] = useState(null);
  const [error, setError] = useState('');
  const [at, setAt] = useState(null);
  useEffect(() => {
    let live = true;
    let timer = 0;
    const tick = async () => {
      if (!document.hidden) {
        try {
          const d = await api.health();
          if (!live) return;
          setData(d);
          setAt(new Date());
          setError('');
        } catch (e) {
          if (!live) return;
          setError(e.status === 0 ? 'The server cannot be reached: the figures below are from the last answer.'
            : e.status === 404 ? 'No dashboard here: this server serves a plain folder, without qsfs behind it.' : e.message);
          if (e.status === 404) return; // it will not appear by asking again
        }
      }
      if (live) timer = setTimeout(tick, POLL);
    };
    tick();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, []);
  if (!data && !error) return <Spinner label="Asking the node…" />;
  if (!data) return <div class="page"><p class="form-error" data-testid="health-error">{error}</p></div>;
  const s = data.status || {};
  const backends = s.backends || [];
  const up = backends.filter((b) => b.reachable).length;
  // losses_survivable: -1 while unknown (no object counted yet).
  const losses = data.losses_survivable ?? -1;
  const known = losses >= 0;
  const risk = (s.at_risk || []).filter(Boolean);
  const down = backends.length - up;
  const level = risk.length || down > 0 ? 'bad' : !known ? 'unknown' : losses === 0 ? 'warn' : 'ok';
  const red = s.redundancy || null;
  const rpo = s.rpo_seconds || 0;
  const target = s.rpo_target_seconds || 0;
  const q = s.queue || {};
  const cache = s.cache || {};
  const hist = data.history || [];
  const byRed = red && red.ByShards && Object.keys(red.ByShards).length ? red.ByShards : null;
  return (
    <div class="page health" data-testid="health-page">
      <div class="page-head">
        <h1>Health</h1>
        <span class="spacer" />
        <span class="muted small" data-testid="health-updated">{at ? `Updated ${at.toLocaleTimeString()} · every 5 s` : ''}</span>
      </div>
      {error && <p class="form-error" data-testid="health-error">{error}</p>}
      <section class={`headline card level-${level}`} data-testid="health-headline" data-level={level}>
        <div class="headline-num" data-testid="losses">{known ? losses : '?'}</div>
        <div>
          <div class="headline-text">
            {!known ? 'How many backend losses your data survives is not known yet (no stored object counted).'
              : losses > 0 ? `Your data survives ${losses} more backend loss${losses === 1 ? '' : 'es'}.`
                : 'One more backend loss would make some data unreadable.'}
          </div>
          <div class="muted">
            {up} of {backends.length} backends up{down > 0 ? ` · ${down} down` : ''} · lowest redundancy {s.lowest_redundancy ?? '–'} of {s.expected_shards ?? '–'} shards{red && red.Needed ? ` (${red.Needed} needed to read)` : ''}
          </div>
        </div>
      </section>
      {risk.length > 0 && (
        <section class="card risk" data-testid="at-risk">
          <h2>At risk</h2>
          <ul>{risk.map((r, i) => <li key={i}>{r}</li>)}</ul>
        </section>
      )}
      <div class="cards">
        <section class="card" data-testid="rpo-card">
          <h2>Recovery point</h2>
          <div class={`big ${target && rpo > target ? 'bad' : ''}`} data-testid="rpo">{rpo ? fmtDuration(rpo) : 'all stored'}</div>
          <div class="muted">target {target ? fmtDuration(target) : '–'} · {rpo ? 'age of the oldest write not yet on the backends' : 'every write is on the backends'}</div>
          {target > 0 && <Progress value={rpo} max={target} label="RPO against its target" />}
          <div class="muted small">
            {s.last_point && s.last_point.generation ? `Last point #${s.last_point.generation} stored ${fmtAgo(s.last_point.stored_at)}` : 'No recovery point stored yet'}
            {s.points_pending ? ` · ${s.points_pending} pending` : ''}
          </div>
        </section>
        <section class="card" data-testid="queue-card">
          <h2>Upload queue</h2>
          <div class="big" data-testid="queue-jobs">{q.jobs || 0} <span class="unit">jobs</span></div>
          <div class="muted">{fmtSize(q.bytes || 0)}{validTime(q.oldest) && q.jobs ? ` · oldest ${fmtAgo(q.oldest)}` : ''}</div>
          {q.failing > 0 && <div class="bad" data-testid="queue-failing">{q.failing} failing{q.last_error ? `: ${q.last_error}` : ''}</div>}
        </section>
        <section class="card" data-testid="cache-card">
          <h2>Local cache</h2>
          <div class="big">{fmtSize(cache.used_bytes || 0)}</div>
          <div class="muted">of {cache.cap_bytes ? fmtSize(cache.cap_bytes) : 'no cap'}</div>
          {cache.cap_bytes > 0 && <Progress value={cache.used_bytes || 0} max={cache.cap_bytes} label="Cache used against its cap" testid="cache-bar" />}
        </section>
        <section class="card" data-testid="objects-card">
          <h2>Stored objects</h2>
          <div class="big">{s.remote_objects ?? 0}</div>
          <div class="muted">{fmtSize(s.remote_bytes || 0)} on the backends{s.garbage_objects ? ` · ${s.garbage_objects} to reclaim` : ''}</div>
          {byRed && typeof byRed === 'object' && (
            <table class="mini" data-testid="by-redundancy">
              <tbody>
                {Object.entries(byRed).sort((a, b) => Number(a[0]) - Number(b[0])).map(([k, v]) => (
                  <tr key={k} class={red.Needed && Number(k) <= red.Needed ? 'bad' : ''}>
                    <td>{k} of {red.Expected || s.expected_shards} shards</td><td>{v} object{v === 1 ? '' : 's'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section class="card" data-testid="repair-card">
          <h2>Repair</h2>
          <div class="big">{validTime(s.last_repair?.at) ? fmtAgo(s.last_repair.at) : 'not yet'}</div>
          <div class="muted">{s.last_repair?.repaired || 0} objects repaired in the last pass</div>
          {s.last_repair?.error && <div class="bad">{s.last_repair.error}</div>}
          {s.scrub && <div class="muted small">scrub: {JSON.stringify(s.scrub)}</div>}
        </section>
      </div>
      <section class="card">
        <h2>Backends</h2>
        <table class="table" data-testid="backends">
          <thead><tr><th>Backend</th><th>State</th><th class="hide-narrow">Latency</th><th class="hide-narrow">Used / free</th></tr></thead>
          <tbody>
            {backends.map((b, i) => (
              <tr key={i} class={b.reachable ? '' : 'row-down'} data-testid="backend-row" data-up={b.reachable ? '1' : '0'}>
                <td><span class="mono">{b.address}</span>{b.namespace && <span class="muted"> / {b.namespace}</span>}</td>
                <td>
                  <span class={`pill ${b.reachable ? 'pill-ok' : 'pill-bad'}`}>{b.reachable ? 'up' : 'down'}</span>
                  {b.error && <div class="bad small">{b.error}</div>}
                </td>
                <td class="hide-narrow">{b.reachable && b.latency_ms > 0 ? `${b.latency_ms < 10 ? b.latency_ms.toFixed(1) : Math.round(b.latency_ms)} ms` : '–'}</td>
                <td class="hide-narrow">{b.reachable ? `${fmtSize(b.used_bytes || 0)} / ${b.free_bytes >= 0 ? fmtSize(b.free_bytes) : 'unknown'}` : '–'}</td>
              </tr>
            ))}
            {!backends.length && <tr><td colSpan={4} class="muted">No backends configured: the data lives on this machine only.</td></tr>}
          </tbody>
        </table>
      </section>
      <section class="charts">
        <Chart title="Recovery point (RPO)" data={hist} series={[{ key: 'rpo_seconds', label: 'RPO' }]} fmt={fmtDuration} limit={target} />
        <Chart title="Upload queue" data={hist} series={[{ key: 'queue_bytes', label: 'bytes' }]} fmt={fmtSize} />
        <Chart title="Cache" data={hist} series={[{ key: 'cache_used_bytes', label: 'used' }, { key: 'cache_cap_bytes', label: 'cap', dash: true }]} fmt={fmtSize} />
        <Chart title="Backends up" data={hist} series={[{ key: 'backends_up', label: 'up' }, { key: 'backends_total', label: 'total', dash: true }]} fmt={(v) => String(Math.round(v))} />
      </section>
    </div>
  );
}

/** Chart is a small hand-made SVG line chart over the history samples. */
function Chart({ title, data, series, fmt, limit }) {
  const W = 320;
  const H = 120;
  const P = 4;
  const pts = data.filter((d) => d && d.t);
  let content;
  if (pts.length < 2) {
    content = <div class="muted small chart-empty">Collecting samples…</div>;
  } else {
    const t0 = new Date(pts[0].t).getTime();
    const t1 = new Date(pts[pts.length - 1].t).getTime();
    let max = limit || 0;
    for (const d of pts) for (const s of series) max = Math.max(max, d[s.key] || 0);
    if (max <= 0) max = 1;
    const x = (d) => P + ((new Date(d.t).getTime() - t0) / Math.max(1, t1 - t0)) * (W - 2 * P);
    const y = (v) => H - P - ((v || 0) / max) * (H - 2 * P);
    const last = pts[pts.length - 1];
    content = (
      <>
        <svg viewBox={`0 0 ${W} ${H}`} class="chart" preserveAspectRatio="none" role="img" aria-label={title}>
          {limit > 0 && <line x1={P} x2={W - P} y1={y(limit)} y2={y(limit)} class="chart-limit" />}
          {series.map((s, i) => (
            <polyline key={s.key} class={`chart-line chart-line-${i} ${s.dash ? 'dash' : ''}`} fill="none"
              points={pts.map((d) => `${x(d).toFixed(1)},${y(d[s.key]).toFixed(1)}`).join(' ')} />
          ))}
        </svg>
        <div class="chart-legend muted small">
          {series.map((s) => <span key={s.key}>{s.label}: {fmt(last[s.key] || 0)} </span>)}
          <span>· max {fmt(max)} · since {fmtTime(pts[0].t)}</span>
        </div>
      </>
    );
  }
  return (
    <div class="card chart-card" data-testid="chart">
      <h2>{title}</h2>
      {content}
    </div>
  );
}
