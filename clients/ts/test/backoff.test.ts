import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fullJitter } from '../src/index.js';

test('full jitter: uniform below a ceiling that doubles per attempt up to the cap', () => {
  const opts = { baseMs: 100, capMs: 1000 };
  // The extremes of the random source give the window's bounds.
  const ceilings = [0, 1, 2, 3, 4, 5, 60, 5000].map((n) => fullJitter(n, opts, () => 0.999999));
  assert.deepEqual(ceilings, [99, 199, 399, 799, 999, 999, 999, 999]);
  assert.equal(fullJitter(3, opts, () => 0), 0);
  // The default source stays inside the window.
  for (let i = 0; i < 1000; i++) {
    const d = fullJitter(2, opts);
    assert.ok(d >= 0 && d < 400, `${d}`);
  }
});
