// Exact decimal arithmetic on price texts ("189.230000"), so the change column is as
// exact as the prices themselves: binary floats would print 0.30000000000000004.

/** {units: BigInt, scale} for "189.230000" (18923000n, 6) or "1E+3"; null if not a number. */
export function parseDecimal(text) {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return null;
  const [, sign, whole, fraction = "", exponent = "0"] = match;
  let units = BigInt(sign + whole + fraction);
  let scale = fraction.length - Number(exponent);
  if (scale < 0) {
    units *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { units, scale };
}

function rescale(d, scale) {
  return d.units * 10n ** BigInt(scale - d.scale);
}

export function subtract(a, b) {
  const scale = Math.max(a.scale, b.scale);
  return { units: rescale(a, scale) - rescale(b, scale), scale };
}

/** The decimal's text with its scale kept: "+0.120000", "-1.5", "0.00". */
export function formatSigned(d) {
  const negative = d.units < 0n;
  let digits = (negative ? -d.units : d.units).toString().padStart(d.scale + 1, "0");
  if (d.scale > 0) digits = `${digits.slice(0, -d.scale)}.${digits.slice(-d.scale)}`;
  if (d.units === 0n) return digits;
  return (negative ? "\u2212" : "+") + digits; // a real minus sign, the width of the plus
}

/** (a - b) / b as a percentage text with two decimals: "+0.06%". */
export function percentChange(change, base) {
  const scale = Math.max(change.scale, base.scale);
  const ratio = Number(rescale(change, scale)) / Number(rescale(base, scale));
  if (!Number.isFinite(ratio)) return "";
  const text = Math.abs(ratio * 100).toFixed(2);
  if (Number(text) === 0) return "0.00%";
  return `${ratio < 0 ? "\u2212" : "+"}${text}%`;
}

export function sign(d) {
  return d.units > 0n ? 1 : d.units < 0n ? -1 : 0;
}
