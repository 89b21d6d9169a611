// The script of a pare report page (src/experiments/report.h): draws every
// chart listed in the page's data (the JSON in #pare-data) with Chart.js, the
// Life success tables as heat maps, the cost table, and what is not shown.
// Text from the data is only ever set as textContent, never parsed as HTML.
//
// When it is done it records on <body>: data-status="done",
// data-charts-expected (the charts listed), data-charts-drawn (those drawn with
// at least one point inside the plot area and pixels on the canvas) and
// data-errors (a JSON list of uncaught errors and console.error calls since the
// page began) and data-page-height (pixels, for a screenshot of the whole page). The browser test (tests/report/) reads them with --dump-dom.
(function () {
  'use strict';
  var errors = window.pareErrors || [];
  var drawn = {};
  var data = {};
  var main = document.getElementById('report');
  var palette = ['#4e79a7', '#e15759', '#59a14f', '#f28e2b', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7',
                 '#9c755f', '#bab0ac', '#1f3b73', '#8c1c13', '#2f6b2f', '#a65e00', '#2a7f7a', '#8a7a00',
                 '#6b3d66', '#c2185b', '#5d4037', '#616161'];

  function color(i) { return palette[i % palette.length]; }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    if (attrs) Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    // toPrecision, without trailing zeros after the decimal point (100 stays 100)
    var parts = Number(v).toPrecision(digits || 3).split('e');
    if (parts[0].indexOf('.') >= 0) parts[0] = parts[0].replace(/0+$/, '').replace(/\.$/, '');
    return parts.join('e');
  }

  // 9.58e11 -> "958 G"; units added by the caller.
  function si(v) {
    if (v === null || v === undefined || !isFinite(v)) return '–';
    var prefixes = [[1e15, 'P'], [1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (var i = 0; i < prefixes.length; i++)
      if (Math.abs(v) >= prefixes[i][0]) return fmt(v / prefixes[i][0]) + ' ' + prefixes[i][1];
    return fmt(v) + ' ';
  }

  function bytesText(v) { return si(v) + 'B'; }

  // 0.000002565 -> "2.565e-6"
  function small(v) {
    var parts = Number(v).toExponential(3).split('e');
    parts[0] = parts[0].replace(/0+$/, '').replace(/\.$/, '');
    return parts[0] + 'e' + Number(parts[1]);
  }

  function section(id, title, note) {
    var s = el('section', {'class': 'chart', 'id': id, 'data-chart': id});
    s.appendChild(el('h2', null, title));
    if (note) s.appendChild(el('p', {'class': 'note'}, note));
    main.appendChild(s);
    return s;
  }

  // A chart whose every element is inside its plot area and whose canvas has
  // pixels counts as drawn.
  function checkDrawn(id, chart) {
    var area = chart.chartArea, inside = 0;
    chart.data.datasets.forEach(function (ds, i) {
      chart.getDatasetMeta(i).data.forEach(function (e) {
        if (isFinite(e.x) && isFinite(e.y) && e.x >= area.left - 1 && e.x <= area.right + 1 &&
            e.y >= area.top - 1 && e.y <= area.bottom + 1) inside++;
      });
    });
    var ink = 0, c = chart.canvas, px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (var k = 3; k < px.length; k += 16) if (px[k] > 0) ink++;
    var s = document.getElementById(id);
    s.setAttribute('data-points', String(inside));
    s.setAttribute('data-ink', String(ink));
    if (inside > 0 && ink > 0) { drawn[id] = true; s.setAttribute('data-drawn', 'yes'); }
  }

  // Draws the names of a few points beside them.
  var pointLabels = {
    id: 'parePointLabels',
    afterDatasetsDraw: function (chart) {
      if (!chart.options.plugins.parePointLabels) return;
      var ctx = chart.ctx, area = chart.chartArea, placed = [];
      ctx.save();
      ctx.font = '11px sans-serif';
      ctx.fillStyle = '#333';
      function free(b) {
        return b.x >= area.left && b.x + b.w <= area.right && b.y >= area.top && b.y + b.h <= area.bottom &&
               placed.every(function (p) {
                 return b.x + b.w <= p.x || p.x + p.w <= b.x || b.y + b.h <= p.y || p.y + p.h <= b.y;
               });
      }
      chart.data.datasets.forEach(function (ds, i) {
        if (ds.noPointLabels || chart.getDatasetMeta(i).hidden) return;
        chart.getDatasetMeta(i).data.forEach(function (e, j) {
          var raw = ds.data[j];
          if (!raw || !raw.label || !isFinite(e.x) || !isFinite(e.y)) return;
          // The first place beside the point that overlaps no other label.
          var w = ctx.measureText(raw.label).width, h = 13;
          var spots = [[7, -h - 3], [7, 3], [-7 - w, -h - 3], [-7 - w, 3], [-w / 2, -h - 9], [-w / 2, 9],
                       [7, -2 * h - 5], [7, h + 5], [-7 - w, -2 * h - 5], [-7 - w, h + 5]];
          for (var k = 0; k < spots.length; k++) {
            var b = {x: e.x + spots[k][0], y: e.y + spots[k][1], w: w, h: h};
            if (free(b) || k === spots.length - 1) {
              placed.push(b);
              ctx.textBaseline = 'top';
              ctx.fillText(raw.label, b.x, b.y);
              return;
            }
          }
        });
      });
      ctx.restore();
    }
  };

  function chart(id, title, note, config, height) {
    var s = section(id, title, note);
    var box = el('div', {'class': 'canvas-box'});
    box.style.height = (height || 380) + 'px';
    var canvas = el('canvas', {'role': 'img', 'aria-label': title});
    box.appendChild(canvas);
    s.appendChild(box);
    config.options = config.options || {};
    config.options.animation = false;
    config.options.responsive = true;
    config.options.maintainAspectRatio = false;
    config.plugins = (config.plugins || []).concat([pointLabels]);
    var c = new Chart(canvas, config);
    checkDrawn(id, c);
    return c;
  }

  function axis(title, extra) {
    var a = {title: {display: true, text: title}};
    Object.keys(extra || {}).forEach(function (k) { a[k] = extra[k]; });
    return a;
  }

  // Bounds of a log axis around the points of the datasets, with some room.
  function logRange(sets) {
    var xs = [];
    sets.forEach(function (ds) { ds.data.forEach(function (p) { if (p && p.x > 0) xs.push(p.x); }); });
    if (!xs.length) return {};
    return {min: Math.min.apply(null, xs) / 1.6, max: Math.max.apply(null, xs) * 1.6};
  }

  function tooltip(describe) {
    return {callbacks: {label: function (ctx) { return describe(ctx.raw, ctx.dataset); }}};
  }

  function logTicks(format) {
    // Every tick labelled on a short axis; on a long one 1, 2 and 5 of each decade.
    // The axis's own bounds are labelled only when they fall on such a value.
    return {callback: function (v, i, ticks) {
      var m = v / Math.pow(10, Math.floor(Math.log10(v)));
      var round = Math.abs(m - Math.round(m)) < 1e-6;
      if (ticks.length <= 10) return round ? format(v) : '';
      return [1, 2, 5].some(function (k) { return Math.abs(m - k) < 1e-6; }) ? format(v) : '';
    }};
  }

  // ---- the charts ----

  function curves() {
    if (!data.curves || !data.curves.length) return;
    var loss = [], acc = [];
    data.curves.forEach(function (r, i) {
      function pts(ys) {
        return r.epoch.map(function (e, j) { return {x: e, y: ys[j]}; }).filter(function (p) {
          return p.x !== null && p.y !== null;
        });
      }
      loss.push({label: r.run + ' train', data: pts(r.train_loss), borderColor: color(i), backgroundColor: color(i),
                 pointRadius: 2});
      loss.push({label: r.run + ' test', data: pts(r.test_loss), borderColor: color(i), backgroundColor: color(i),
                 borderDash: [6, 4], pointRadius: 2});
      acc.push({label: r.run, data: pts(r.test_accuracy), borderColor: color(i), backgroundColor: color(i),
                pointRadius: 2});
    });
    // A legend of dozens of runs would crowd out the lines: then the tooltip names them.
    var many = data.curves.length > 8;
    var legend = {display: !many};
    var more = many ? ' ' + data.curves.length + ' runs: hover a line for its name.' : '';
    chart('curves-loss', 'Loss per epoch', 'Training loss (solid, the mean over the epoch) and test loss (dashed) ' +
          'of each training run.' + more, {type: 'line', data: {datasets: loss},
          options: {scales: {x: axis('epoch', {type: 'linear', ticks: {precision: 0}}), y: axis('loss (cross-entropy)')},
                    plugins: {legend: legend}}}, many ? 460 : 380);
    chart('curves-accuracy', 'Test accuracy per epoch', 'Measured on the test set after each epoch.' + more,
          {type: 'line', data: {datasets: acc},
           options: {scales: {x: axis('epoch', {type: 'linear', ticks: {precision: 0}}), y: axis('test accuracy (%)', {grace: '4%'})},
                     plugins: {legend: legend}}}, many ? 460 : 380);
  }

  function prune() {
    (data.prune || []).forEach(function (ch, ci) {
      var xs = [];
      var sets = ch.series.map(function (s, i) {
        s.points.forEach(function (p) { xs.push(p.x); });
        return {label: s.label, data: s.points, showLine: true, borderColor: color(i), backgroundColor: color(i),
                pointRadius: s.points.length < 3 ? 5 : 3, noPointLabels: true};
      });
      // Room left of 100 % and right of the sparsest point (log axis).
      var lo = Math.min.apply(null, xs.concat([100])) / 1.5;
      ch.dense.forEach(function (d, i) {
        sets.push({label: d.label, data: [{x: 110, y: d.y, label: d.label, runs: d.runs},
                                          {x: lo, y: d.y, label: d.label, runs: d.runs}],
                   showLine: true, borderColor: '#555', borderDash: [4, 4], pointRadius: 0, borderWidth: 1.5,
                   noPointLabels: true});
      });
      // A collapsed run (chance accuracy) would squash every other line into
      // a few pixels: the axis stops 25 points below the dense line, and the
      // points below it are named.
      var yopt = {grace: '4%'}, below = [];
      if (ch.dense.length) {
        var floor = Math.floor(ch.dense[0].y - 25);
        ch.series.forEach(function (s) {
          s.points.forEach(function (p) {
            if (p.y < floor) below.push(s.label + ' at ' + fmt(p.x) + ' % of weights: ' + fmt(p.y, 3) + ' %');
          });
        });
        if (below.length) yopt = {min: floor, grace: '4%'};
      }
      chart('prune-' + ci, 'Accuracy vs remaining weights: ' + ch.model,
            'Test accuracy at the end of each training, against the share of weights left (log scale, ' +
            'fewer to the right). Dashed: the dense network. Several runs of one method at one density are averaged.' +
            (below.length ? ' Below the axis: ' + below.slice(0, 4).join('; ') +
                            (below.length > 4 ? ' and ' + (below.length - 4) + ' more' : '') + '.' : ''),
            {type: 'scatter', data: {datasets: sets},
             options: {scales: {
               x: axis('weights remaining (%)', {type: 'logarithmic', reverse: true, max: 110, min: lo,
                                                 ticks: logTicks(function (v) { return fmt(v) + ' %'; })}),
               y: axis('test accuracy (%)', yopt)},
               plugins: {tooltip: tooltip(function (p, ds) {
                 var t = ds.label + ': ' + fmt(p.y, 4) + ' % at ' + fmt(p.x) + ' % of weights (' + p.label + ')';
                 if (p.runs) t = ds.label + ': ' + p.runs;
                 if (p.n > 1) t += '; ' + p.n + ' runs, ' + fmt(p.min, 4) + '–' + fmt(p.max, 4) + ' %';
                 return t;
               })}}}, 420);
    });
  }

  function bytes() {
    if (!data.bytes || !data.bytes.length) return;
    var sets = [], i = 0, count = 0;
    data.bytes.forEach(function (ch) {
      sets.push({label: ch.model + ': .pare files', data: ch.points, borderColor: color(i), backgroundColor: color(i),
                 pointRadius: 5});
      count += ch.points.length;
      if (ch['float'].length)
        sets.push({label: ch.model + ': float32, every weight', data: ch['float'], borderColor: color(i),
                   backgroundColor: '#fff', pointStyle: 'rectRot', pointRadius: 7, noPointLabels: true});
      i++;
    });
    chart('bytes', 'Accuracy vs bytes',
          'Each .pare file at its size on disk (log scale) and its test accuracy; the hollow diamond is the ' +
          'dense network stored as float32. Hover a point for where its accuracy comes from.',
          {type: 'scatter', data: {datasets: sets},
           options: {scales: {x: axis('file size (bytes, log scale)', {type: 'logarithmic', ticks: logTicks(bytesText),
                                                                 min: logRange(sets).min, max: logRange(sets).max}),
                              y: axis('test accuracy (%)', {grace: '4%'})},
                     plugins: {parePointLabels: count <= 12,
                               tooltip: tooltip(function (p) {
                                 return p.label + ': ' + bytesText(p.x) + ', ' + fmt(p.y, 4) + ' %' +
                                        (p.what ? ' (' + p.what + ')' : '') +
                                        (p.accuracy_source ? '; accuracy: ' + p.accuracy_source : '');
                               })}}}, 400);
  }

  function cost() {
    (data.cost || []).forEach(function (ch, ci) {
      var joules = ch.axis === 'joules';
      var unit = joules ? 'J' : 'FLOP';
      var sets = [
        {label: 'runs', data: ch.points, borderColor: color(0), backgroundColor: color(0), pointRadius: 4},
        {label: 'Pareto front (nothing cheaper is as accurate)', data: ch.front, showLine: true, borderColor: color(1),
         backgroundColor: color(1), pointRadius: 6, pointStyle: 'star', borderWidth: 2, noPointLabels: true}];
      chart('cost-' + ci, 'Accuracy vs training ' + (joules ? 'energy' : 'cost') + ': ' + ch.model,
            joules ? 'Energy of the training behind each model (the cost ledger; hover for measured or estimated).'
                   : 'Floating-point operations of the training behind each model, counting the weights kept (a ' +
                     'pruned model includes the training it was pruned from; a ticket round every round before it).',
            {type: 'scatter', data: {datasets: sets},
             options: {scales: {x: axis('training ' + (joules ? 'energy (J)' : 'FLOPs') + ', log scale',
                                        {type: 'logarithmic', ticks: logTicks(function (v) { return si(v) + unit; }),
                                         min: logRange(sets).min, max: logRange(sets).max}),
                                y: axis('test accuracy (%)', {grace: '4%'})},
                       plugins: {parePointLabels: ch.points.length <= 8,
                                 tooltip: tooltip(function (p) {
                                   return p.label + ': ' + si(p.x) + unit + ', ' + fmt(p.y, 4) + ' %' +
                                          (p.energy ? ' (' + p.energy + ')' : '') + (p.note ? '; ' + p.note : '');
                                 })}}}, 400);
    });
  }

  function layers() {
    (data.layers || []).forEach(function (ch, ci) {
      var sets = ch.series.map(function (s, i) {
        return {label: s.label, backgroundColor: color(i),
                data: ch.layers.map(function (name) {
                  var v = s.values[name];
                  return v === undefined || v === null ? null : 100 - v;
                })};
      });
      chart('layers-' + ci, 'Per-layer sparsity: ' + ch.model,
            'Share of each layer\'s weights pruned (biases are not pruned).',
            {type: 'bar', data: {labels: ch.layers, datasets: sets},
             options: {scales: {x: axis('layer'), y: axis('weights pruned (%)', {min: 0, max: 100})},
                       plugins: {tooltip: {callbacks: {label: function (ctx) {
                         return ctx.dataset.label + ': ' + fmt(ctx.raw, 4) + ' % pruned';
                       }}}}}}, 340);
    });
  }

  function heat(rate) {
    // white -> green, with dark text on light cells
    var r = Math.round(255 - rate * (255 - 35)), g = Math.round(255 - rate * (255 - 139)),
        b = Math.round(255 - rate * (255 - 69));
    return 'rgb(' + r + ',' + g + ',' + b + ')';
  }

  function life() {
    (data.life || []).forEach(function (st, li) {
      var id = 'life-' + li;
      var s = section(id, 'Game of Life: how often training finds an exact solution (' + st.name + ')',
                      'Rows: Game of Life steps n; columns: width factor m. Each cell: the share of runs (seeds) ' +
                      'whose net got every cell of every test board right, with solved / runs; hover for the 95 % ' +
                      'Wilson interval and the parameter count.');
      var t = el('table', {'class': 'heat'});
      var head = el('tr');
      head.appendChild(el('th', null, 'n \\ m'));
      st.ms.forEach(function (m) { head.appendChild(el('th', null, 'm = ' + m)); });
      t.appendChild(head);
      var cells = 0;
      st.ns.forEach(function (n) {
        var tr = el('tr');
        tr.appendChild(el('th', null, 'n = ' + n));
        st.ms.forEach(function (m) {
          var c = st.cells.filter(function (x) { return x.n === n && x.m === m; })[0];
          var td = el('td');
          if (c && c.rate !== null) {
            td.style.background = heat(c.rate);
            td.style.color = c.rate > 0.6 ? '#fff' : '#222';
            td.appendChild(el('div', {'class': 'rate'}, fmt(100 * c.rate, 3) + ' %'));
            td.appendChild(el('div', {'class': 'count'},
                              (c.successes !== null ? c.successes : '?') + ' / ' + (c.runs !== null ? c.runs : '?')));
            td.setAttribute('title', '95 % CI ' + fmt(100 * c.lo, 3) + '–' + fmt(100 * c.hi, 3) + ' %, ' +
                            fmt(c.parameters) + ' parameters');
            cells++;
          } else {
            td.setAttribute('class', 'empty');
            td.textContent = 'not run';
          }
          tr.appendChild(td);
        });
        t.appendChild(tr);
      });
      s.appendChild(t);
      if (cells > 0) { drawn[id] = true; s.setAttribute('data-drawn', 'yes'); }
    });
  }

  function costTable() {
    if (!data.cost_table || !data.cost_table.length) return;
    var s = section('cost-table', 'What the training cost',
                    'Each figure with how it was obtained: counted (FLOPs from layer shapes), measured (clocks, ' +
                    'memory, energy counters) or estimated (energy from a power model; CO2e and money from settings).');
    var t = el('table', {'class': 'costs'});
    var head = el('tr');
    ['run', 'what', 'figure', 'value', 'how'].forEach(function (h) { head.appendChild(el('th', null, h)); });
    t.appendChild(head);
    var rows = 0;
    data.cost_table.forEach(function (g) {
      g.rows.forEach(function (r, i) {
        var tr = el('tr', i === 0 ? {'class': 'first'} : null);
        tr.appendChild(el('td', null, i === 0 ? g.run : ''));
        tr.appendChild(el('td', null, i === 0 ? g.what : ''));
        tr.appendChild(el('td', null, r.figure));
        var v = r.unit === 'FLOP' ? si(r.value) + 'FLOP' : r.unit === 'bytes' ? bytesText(r.value)
              : (r.value !== 0 && Math.abs(r.value) < 1e-3 ? small(r.value) : fmt(r.value, 4)) + ' ' + r.unit;
        tr.appendChild(el('td', {'class': 'num'}, v));
        var how = el('td');
        how.appendChild(el('span', {'class': 'badge ' + r.measured}, r.measured));
        how.appendChild(document.createTextNode(' ' + r.how));
        tr.appendChild(how);
        t.appendChild(tr);
        rows++;
      });
    });
    if (data.cost_table.length > 10) {
      var d = el('details');
      d.appendChild(el('summary', null, data.cost_table.length + ' runs and groups of trainings: show the table'));
      d.appendChild(t);
      s.appendChild(d);
    } else {
      s.appendChild(t);
    }
    if (rows > 0) { drawn['cost-table'] = true; s.setAttribute('data-drawn', 'yes'); }
  }

  // Short: first, open. Long: after the charts, folded.
  function summary(atEnd) {
    var runs = data.runs || [];
    if ((runs.length > 12) !== atEnd) return;
    var s = el('section', {'class': 'summary'});
    s.appendChild(el('h2', null, 'What was read'));
    var t = el('table');
    var head = el('tr');
    ['run', 'kind', 'model', 'test accuracy', 'sparsity', 'epochs', 'training FLOPs', 'seconds'].forEach(function (h) {
      head.appendChild(el('th', null, h));
    });
    t.appendChild(head);
    (data.runs || []).forEach(function (r) {
      var tr = el('tr');
      tr.appendChild(el('td', null, r.name));
      tr.appendChild(el('td', null, r.kind + (r.bytes ? ', ' + bytesText(r.bytes) : '')));
      tr.appendChild(el('td', null, r.model || '–'));
      tr.appendChild(el('td', {'class': 'num'}, r.accuracy === null ? '–' : fmt(100 * r.accuracy, 4) + ' %'));
      tr.appendChild(el('td', {'class': 'num'}, r.sparsity === null ? '–' : fmt(100 * r.sparsity, 3) + ' %'));
      tr.appendChild(el('td', {'class': 'num'}, r.epochs === null ? '–' : r.epochs));
      tr.appendChild(el('td', {'class': 'num'}, r.flops === null ? '–' : si(r.flops) + 'FLOP'));
      tr.appendChild(el('td', {'class': 'num'}, r.seconds === null ? '–' : fmt(r.seconds) + ' s'));
      t.appendChild(tr);
    });
    if (atEnd) {
      var d = el('details');
      d.appendChild(el('summary', null, runs.length + ' runs and files: show the table'));
      d.appendChild(t);
      s.appendChild(d);
    } else {
      s.appendChild(t);
    }
    main.appendChild(s);
  }

  function missing() {
    var s = el('section', {'class': 'missing', 'id': 'not-shown'});
    s.appendChild(el('h2', null, 'Not shown'));
    var list = data.missing || [];
    if (!list.length) s.appendChild(el('p', null, 'Everything the report can draw is drawn.'));
    var ul = el('ul');
    list.forEach(function (m) { ul.appendChild(el('li', null, m)); });
    s.appendChild(ul);
    main.appendChild(s);
  }

  function sources() {
    var s = el('details', {'class': 'sources'});
    s.appendChild(el('summary', null, 'Files read (' + (data.sources || []).length + ')'));
    var ul = el('ul');
    (data.sources || []).forEach(function (f) { ul.appendChild(el('li', null, f)); });
    s.appendChild(ul);
    main.appendChild(s);
  }

  function step(f) {
    try { f(); } catch (e) { errors.push(String(e && e.stack || e)); }
  }

  step(function () {
    data = JSON.parse(document.getElementById('pare-data').textContent);
    document.getElementById('subtitle').textContent =
        'Written by pare report; charts drawn by ' + (data.chartjs || 'Chart.js') + ', inlined: this file needs no network.';
    var n = main.querySelector('noscript');
    if (n) main.removeChild(n);
  });
  if (typeof Chart === 'undefined') errors.push('Chart.js did not load');
  else Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  step(function () { summary(false); });
  step(curves);
  step(prune);
  step(bytes);
  step(cost);
  step(layers);
  step(life);
  step(costTable);
  step(function () { summary(true); });
  step(missing);
  step(sources);

  var expected = data.charts || [];
  var ok = expected.filter(function (id) { return drawn[id]; });
  var body = document.body;
  body.setAttribute('data-charts-expected', String(expected.length));
  body.setAttribute('data-charts-drawn', String(ok.length));
  body.setAttribute('data-charts-missing', expected.filter(function (id) { return !drawn[id]; }).join(' '));
  body.setAttribute('data-errors', JSON.stringify(errors));
  body.setAttribute('data-page-height', String(Math.ceil(document.documentElement.scrollHeight)));
  body.setAttribute('data-status', 'done');
})();
