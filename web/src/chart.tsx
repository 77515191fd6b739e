/**
 * A uPlot time chart that follows its container's width. uPlot styles its
 * elements through the CSSOM (element.style), which the page's CSP allows;
 * it writes no style attribute in markup and no <style> element.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

export interface ChartSeries {
  label: string;
  /** CSS colour. */
  stroke: string;
}

export interface ChartProps {
  /** [x (seconds since the epoch), ...one array per series]. */
  data: uPlot.AlignedData;
  series: ChartSeries[];
  /** Formats a y value (ticks and legend). */
  format: (v: number) => string;
  title: string;
  height?: number;
  /** Tick spacings allowed on the time axis, seconds (uPlot picks sub-second ones for a few seconds of data). */
  timeIncrs?: number[];
}

export function Chart({ data, series, format, title, height = 220, timeIncrs }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const el = box.current;
    if (el === null) return;
    const u = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height,
        series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, value: (_u: uPlot, v: number | null) => (v === null ? '–' : format(v)) }))],
        axes: [timeIncrs === undefined ? {} : { incrs: timeIncrs }, { size: 100, values: (_u: uPlot, vals: number[]) => vals.map(format) }],
        scales: { x: { time: true }, y: { range: (_u: uPlot, _min: number, max: number) => [0, Math.max(1, max * 1.1)] } },
        cursor: { drag: { x: false, y: false } },
      },
      data,
      el,
    );
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // The chart is built once; data changes go through setData below.
  }, []);

  useEffect(() => {
    plot.current?.setData(data);
  }, [data]);

  return <figure class="chart" aria-label={title}><figcaption>{title}</figcaption><div ref={box} /></figure>;
}
