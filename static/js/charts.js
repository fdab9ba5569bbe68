/* L10 chart glue: draws <div class="chart" data-chart="ID"> from <script type="application/json" id="ID">
   (Django's json_script) with the vendored uPlot. No build step. Exposes window.L10Charts.drawAll(root[, force])
   and window.L10Charts.applyTail(tails): the live overview's newest end of every chart (dashboard/live.py),
   the last whole step merged in and the step in progress drawn dashed beside it. */
(function () {
  'use strict';
  if (!window.uPlot) { console.warn('L10Charts: uPlot is not loaded'); return; }
  const live = new Map(); // chart element -> {u: uPlot|null, src: JSON text it was drawn from, data: parsed}
  const DAY = 86400; // x is in unix seconds
  // 24-hour, ISO-ish x-axis ticks: [min step, tick, year change, -, day change, -, hour change, -, mode].
  const TIME_TICKS = [
    [365 * DAY, '{YYYY}', null, null, null, null, null, null, 1],
    [28 * DAY, '{MMM}', '\n{YYYY}', null, null, null, null, null, 1],
    [DAY, '{MMM} {D}', '\n{YYYY}', null, null, null, null, null, 1],
    [3600, '{HH}:{mm}', '\n{YYYY}-{MM}-{DD}', null, '\n{MMM} {D}', null, null, null, 1],
    [60, '{HH}:{mm}', '\n{YYYY}-{MM}-{DD}', null, '\n{MMM} {D}', null, null, null, 1],
    [1, '{HH}:{mm}:{ss}', '\n{YYYY}-{MM}-{DD}', null, '\n{MMM} {D}', null, null, null, 1],
  ];
  const numFmt = new Intl.NumberFormat('en-US', {maximumFractionDigits: 2});
  const fmtTime = uPlot.fmtDate('{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}');
  const utc = ts => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC');

  function withUnit(v, unit) { // "42.5%", "1,250 ms"; a gap shows as a dash
    if (v == null || !isFinite(v)) return '—';
    return numFmt.format(v) + (!unit ? '' : unit === '%' ? '%' : ' ' + unit);
  }

  const cssVar = (el, name, fallback) => getComputedStyle(el).getPropertyValue(name).trim() || fallback;
  const heightOf = el => parseInt(el.dataset.height, 10) || 180;

  // Size the y axis to its longest tick label, so units like "1,250 ms" are never clipped.
  // Measured on every layout cycle: the labels of the first cycle may not be the final ones.
  function axisSize(u, values, axisIdx) {
    const axis = u.axes[axisIdx];
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), '');
    if (longest) {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size) + 2;
  }

  // Dense lines carry no point markers, but a value with gaps on both sides must stay visible.
  function isolatedPoints(u, si, show) {
    if (show) return null;
    const ys = u.data[si], out = [];
    for (let i = 0; i < ys.length; i++) if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) out.push(i);
    return out.length ? out : null;
  }

  function widthOf(el) {
    const cs = getComputedStyle(el);
    const w = el.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
    return Math.max(Math.floor(w) || 0, 200);
  }

  function div(parent, cls, text) {
    const d = parent.appendChild(document.createElement('div'));
    d.className = cls;
    d.textContent = text;
    return d;
  }

  function destroy(el) {
    const entry = live.get(el);
    if (entry && entry.u) entry.u.destroy();
    live.delete(el);
  }

  // The last index where any of the first `lines` series has a value (the latest slot may be a gap).
  function latest(cols, lines) {
    const ys = cols.slice(1, 1 + lines);
    for (let i = cols[0].length - 1; i > 0; i--) if (ys.some(y => y[i] != null)) return i;
    return cols[0].length - 1;
  }

  // uPlot's columns: x, each line, then each line's "so far" twin, empty but for the last whole
  // point and the step in progress (data.partial), so that segment alone is dashed.
  function columns(data) {
    const lines = data.series || [], partial = data.partial;
    const x = partial ? data.x.concat([partial.x]) : data.x.slice();
    const n = x.length, last = partial ? n - 2 : -1;
    const main = lines.map(s => (partial ? s.values.concat([null]) : s.values.slice()));
    const twins = lines.map((s, i) => {
      const ys = new Array(n).fill(null);
      if (partial) {
        if (last >= 0) ys[last] = s.values[last];
        ys[n - 1] = partial.values[i];
      }
      return ys;
    });
    return [x].concat(main, twins);
  }

  const syncKey = el => 'l10-' + ((el.closest('[id]') || document.body).id || 'page');

  function options(el, data) {
    const unit = data.unit || '';
    const grid = cssVar(el, '--chart-grid', '#e8ebef');
    const axis = {stroke: cssVar(el, '--chart-axis', '#5b6470'), font: '11px ' + cssVar(el, '--font', 'system-ui, sans-serif'),
      grid: {stroke: grid, width: 1}, ticks: {stroke: grid, width: 1, size: 4}, gap: 4};
    const series = [{label: 'UTC', value: (u, v) => (v == null ? '—' : fmtTime(utc(v)))}];
    const lines = (data.series || []).length;
    const strokes = (data.series || []).map((s, i) => cssVar(el, '--chart-' + ((i % 4) + 1), '#1f6feb'));
    (data.series || []).forEach((s, i) => {
      // On the step in progress the line has no value: its legend shows the twin's, "so far".
      const value = (u, v, si, idx) => {
        const twin = u.data[1 + lines + i];
        if (v == null && idx === u.data[0].length - 1 && twin && twin[idx] != null) return withUnit(twin[idx], unit) + ' so far';
        return withUnit(v, unit);
      };
      // A reference line (a rule's threshold) is dashed and carries no points.
      const reference = s.style === 'reference';
      series.push({label: s.label, stroke: strokes[i], width: reference ? 1 : 1.5, dash: reference ? [6, 4] : undefined,
        spanGaps: reference, points: reference ? {show: false} : {size: 5, space: 24, fill: strokes[i], filter: isolatedPoints},
        value: value});
    });
    (data.series || []).forEach((s, i) => {
      series.push({label: s.label + ' so far', stroke: strokes[i], width: 1.5, dash: [4, 3], spanGaps: false,
        points: {size: 5, space: 24, fill: strokes[i], filter: isolatedPoints}, value: (u, v) => withUnit(v, unit)});
    });
    return {
      title: el.dataset.title === 'hidden' ? '' : data.title || '', width: widthOf(el), height: heightOf(el), tzDate: utc,
      // One cursor for the charts of one panel: hovering a minute on one shows it on all.
      scales: {x: {time: true}}, cursor: {points: {size: 6}, sync: {key: syncKey(el)}}, legend: {live: true},
      // Away from the cursor, the legend shows the latest point with a value, not blanks.
      hooks: {setCursor: [u => { if (u.cursor.idx == null) u.setLegend({idx: latest(u.data, lines)}); }]},
      series: series,
      axes: [
        Object.assign({}, axis, {values: TIME_TICKS, space: 70}),
        Object.assign({}, axis, {values: (u, splits) => splits.map(v => withUnit(v, unit)),
          size: axisSize, space: 28}),
      ],
    };
  }

  function draw(el, force, merged) {
    const script = document.getElementById(el.dataset.chart);
    if (!script) return;
    const src = script.textContent;
    const prev = live.get(el);
    if (!merged && prev && prev.src === src && !force && el.dataset.drawn === 'true') return;
    // Redrawn from the same JSON (a colour scheme flip): keep what live updates merged in.
    let data = merged || (prev && prev.src === src ? prev.data : null);
    if (!data) {
      try { data = JSON.parse(src); } catch (e) { return console.warn('L10Charts: bad JSON in #' + el.dataset.chart, e); }
    }
    destroy(el);
    el.textContent = '';
    const x = data.x || [], title = data.title || 'Chart';
    el.setAttribute('role', 'img');
    let u = null;
    if (!x.length) {
      el.setAttribute('aria-label', title + ': ' + (data.empty || 'No data'));
      if (data.title && el.dataset.title !== 'hidden') div(el, 'chart-title', data.title);
      // Same footprint as a drawn chart: plot height plus one legend line.
      div(el, 'chart-empty', data.empty || 'No data').style.height =
        'calc(' + heightOf(el) + 'px + var(--chart-legend-height, 24px))';
    } else {
      el.setAttribute('aria-label', title + ': ' + (data.series || []).map(s => s.label).join(', ') +
        ' over the last ' + x.length + ' point' + (x.length === 1 ? '' : 's'));
      u = new uPlot(options(el, data), columns(data), el);
      hideTwins(u, (data.series || []).length);
      u.setLegend({idx: latest(u.data, (data.series || []).length)});
    }
    live.set(el, {u: u, src: src, data: data});
    el.dataset.drawn = 'true';
  }

  // The twins draw the dashed end; the legend names each line once.
  function hideTwins(u, lines) {
    const rows = u.root.querySelectorAll('.u-legend .u-series');
    for (let i = 1 + lines; i < rows.length; i++) rows[i].style.display = 'none';
  }

  // The live overview's tails ({step: {x: [whole, in progress], partial, charts: {name: [[whole, so far]]}}}):
  // the last whole step replaces or extends each chart of that step (dropping what fell out of its
  // span), and the step in progress becomes its dashed end.
  function applyTail(tails) {
    sweep();
    live.forEach((entry, el) => {
      const data = entry.data, tail = data && tails && tails[String(data.step)];
      const lines = tail && tail.charts[data.name];
      if (!lines || !data.x) return;
      const at = tail.x[0];
      let i = data.x.indexOf(at);
      if (i < 0 && (!data.x.length || at > data.x[data.x.length - 1])) {
        // Steps with no report between the chart's end and this one stay gaps.
        let next = data.x.length ? data.x[data.x.length - 1] + data.step : at;
        for (; next <= at; next += data.step) {
          data.x.push(next);
          data.series.forEach(s => s.values.push(null));
        }
        while (data.x.length && data.x[0] <= at - data.span) {
          data.x.shift();
          data.series.forEach(s => s.values.shift());
        }
        i = data.x.length - 1;
      }
      if (i < 0) return; // older than the chart: nothing to mend
      data.series.forEach((s, k) => { s.values[i] = lines[k][0]; });
      data.partial = tail.partial ? {x: tail.x[1], values: lines.map(v => v[1])} : null;
      if (!entry.u) { draw(el, true, data); return; }
      entry.u.setData(columns(data));
      entry.u.setLegend({idx: latest(entry.u.data, data.series.length)});
    });
    document.querySelectorAll('time[data-charts-end]').forEach(el => {
      const first = Object.values(tails || {})[0];
      if (!first) return;
      const panel = el.closest('.charts');
      const chart = panel && panel.querySelector('.chart[data-chart]');
      const entry = chart && live.get(chart);
      const x = entry && entry.data && entry.data.x;
      if (!x || !x.length) return;
      const at = new Date(x[x.length - 1] * 1e3);
      el.setAttribute('datetime', at.toISOString());
      el.textContent = at.toISOString().slice(11, 16) + ' UTC';
    });
  }

  // Destroy charts whose element left the document (replaced by an htmx swap), so nothing leaks.
  function sweep() {
    for (const el of Array.from(live.keys())) if (!el.isConnected) destroy(el);
  }

  function drawAll(root, force) {
    root = root && root.isConnected ? root : document;
    sweep();
    const els = Array.from(root.querySelectorAll('.chart[data-chart]'));
    if (root.matches && root.matches('.chart[data-chart]')) els.unshift(root);
    els.forEach(el => draw(el, force));
  }

  function resizeAll() {
    sweep();
    live.forEach(({u}, el) => { if (u && widthOf(el) !== u.width) u.setSize({width: widthOf(el), height: heightOf(el)}); });
  }

  let timer = null;
  window.addEventListener('resize', () => { clearTimeout(timer); timer = setTimeout(resizeAll, 150); });
  document.addEventListener('htmx:afterSettle', evt => drawAll(evt.target));
  // Canvas colours are resolved when drawn: redraw when the colour scheme flips.
  const scheme = window.matchMedia && window.matchMedia('(prefers-color-scheme: dark)');
  if (scheme && scheme.addEventListener) scheme.addEventListener('change', () => drawAll(document, true));

  window.L10Charts = {drawAll: (root, force) => drawAll(root || document, !!force), applyTail: applyTail};
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => drawAll(document));
  else drawAll(document);
})();
