// A sparkline of recent prices as inline SVG: no chart library, no canvas, scales with
// the cell, and a text alternative for screen readers.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 100;
const HEIGHT = 24;

export function createSparkline(label) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(line);
  return svg;
}

/** Draw `values` (numbers, oldest first), each point one step to the right. */
export function drawSparkline(svg, values, label) {
  const line = svg.firstChild;
  if (values.length === 0) {
    line.setAttribute("points", "");
    return;
  }
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1; // a flat line sits in the middle
  // One price is drawn as a flat line across, as if it had always been so.
  const series = values.length === 1 ? [values[0], values[0]] : values;
  const step = WIDTH / (series.length - 1);
  const points = series.map((value, i) => {
    const y = high === low ? HEIGHT / 2 : 1 + (HEIGHT - 2) * (1 - (value - low) / span);
    return `${(i * step).toFixed(2)},${y.toFixed(2)}`;
  });
  line.setAttribute("points", points.join(" "));
  svg.setAttribute("aria-label", label);
}
