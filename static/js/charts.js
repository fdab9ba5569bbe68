/* L10 chart glue: draws <div class="chart" data-chart="ID"> from <script type="application/json" id="ID">
   (Django's json_script) with the vendored uPlot. No build step. Exposes window.L10Charts.drawAll(root[, force]). */
(function () {
  'use strict';
  if (!window.uPlot) { console.warn('L10Charts: uPlot is not loaded'); return; }
  const live = new Map(); // chart element -> {u: uPlot|null, src: JSON text it was drawn from}
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
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
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

  // The last index where any series has a value (the latest slot may be a gap).
  function latest(cols) {
    for (let i = cols[0].length - 1; i > 0; i--) if (cols.slice(1).some(ys => ys[i] != null)) return i;
    return cols[0].length - 1;
  }

  const syncKey = el => 'l10-' + ((el.closest('[id]') || document.body).id || 'page');

  function options(el, data) {
    const unit = data.unit || '';
    const grid = cssVar(el, '--chart-grid', '#e8ebef');
    const axis = {stroke: cssVar(el, '--chart-axis', '#5b6470'), font: '11px ' + cssVar(el, '--font', 'system-ui, sans-serif'),
      grid: {stroke: grid, width: 1}, ticks: {stroke: grid, width: 1, size: 4}, gap: 4};
    const series = [{label: 'UTC', value: (u, v) => (v == null ? '—' : fmtTime(utc(v)))}];
    (data.series || []).forEach((s, i) => {
      const stroke = cssVar(el, '--chart-' + ((i % 4) + 1), '#1f6feb');
      series.push({label: s.label, stroke: stroke, width: 1.5, spanGaps: false,
        points: {size: 5, space: 24, fill: stroke, filter: isolatedPoints}, value: (u, v) => withUnit(v, unit)});
    });
    return {
      title: el.dataset.title === 'hidden' ? '' : data.title || '', width: widthOf(el), height: heightOf(el), tzDate: utc,
      // One cursor for the charts of one panel: hovering a minute on one shows it on all.
      scales: {x: {time: true}}, cursor: {points: {size: 6}, sync: {key: syncKey(el)}}, legend: {live: true},
      // Away from the cursor, the legend shows the latest point with a value, not blanks.
      hooks: {setCursor: [u => { if (u.cursor.idx == null) u.setLegend({idx: latest(u.data)}); }]},
      series: series,
      axes: [
        Object.assign({}, axis, {values: TIME_TICKS, space: 70}),
        Object.assign({}, axis, {values: (u, splits) => splits.map(v => withUnit(v, unit)),
          size: axisSize, space: 28}),
      ],
    };
  }

  function draw(el, force) {
    const script = document.getElementById(el.dataset.chart);
    if (!script) return;
    const src = script.textContent;
    const prev = live.get(el);
    if (prev && prev.src === src && !force && el.dataset.drawn === 'true') return;
    let data;
    try { data = JSON.parse(src); } catch (e) { return console.warn('L10Charts: bad JSON in #' + el.dataset.chart, e); }
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
      const cols = [x].concat((data.series || []).map(s => s.values));
      u = new uPlot(options(el, data), cols, el);
      u.setLegend({idx: latest(cols)});
    }
    live.set(el, {u: u, src: src});
    el.dataset.drawn = 'true';
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

  window.L10Charts = {drawAll: (root, force) => drawAll(root || document, !!force)};
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => drawAll(document));
  else drawAll(document);
})();
