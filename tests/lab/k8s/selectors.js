// Label and field selectors as the apiserver parses them
// (k8s.io/apimachinery/pkg/labels, pkg/fields): `a=b,c!=d,e in (x,y),f
// notin (z),g,!h` and `metadata.name=x,status.phase!=Active`.
'use strict';

class SelectorError extends Error {}

const LABEL_KEY = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

function checkKey(k) {
  if (!LABEL_KEY.test(k) || k.split('/').pop().length > 63) {
    throw new SelectorError(`unable to parse requirement: <nil>: Invalid value: ${JSON.stringify(k)}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`);
  }
}
function checkValue(v) {
  if (!LABEL_VALUE.test(v) || v.length > 63) {
    throw new SelectorError(`unable to parse requirement: values[0][${v}]: Invalid value: ${JSON.stringify(v)}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')`);
  }
}

/** Splits on commas outside parentheses. */
function splitTop(s) {
  const out = [];
  let depth = 0;
  let cur = '';
  for (const c of s) {
    if (c === '(') depth++;
    if (c === ')') depth--;
    if (c === ',' && depth === 0) { out.push(cur); cur = ''; } else cur += c;
  }
  out.push(cur);
  return out;
}

/** Parses a label selector; returns a predicate on a labels map (throws SelectorError). */
function parseLabelSelector(text) {
  if (!text || !text.trim()) return () => true;
  const reqs = [];
  for (const raw of splitTop(text)) {
    const part = raw.trim();
    if (!part) throw new SelectorError(`found '', expected: !, identifier, or 'end of string'`);
    let m;
    if ((m = /^!\s*(\S+)$/.exec(part))) {
      checkKey(m[1]);
      const k = m[1];
      reqs.push((l) => !(k in l));
    } else if ((m = /^(\S+?)\s+(in|notin)\s*\((.*)\)$/.exec(part))) {
      checkKey(m[1]);
      const k = m[1];
      const vals = m[3].split(',').map((v) => v.trim());
      vals.forEach(checkValue);
      if (m[2] === 'in') reqs.push((l) => k in l && vals.includes(l[k]));
      else reqs.push((l) => !(k in l) || !vals.includes(l[k]));
    } else if ((m = /^([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*)$/.exec(part))) {
      const [, k, op, v] = m;
      checkKey(k);
      if (op === '<' || op === '>') {
        if (!/^-?\d+$/.test(v)) throw new SelectorError(`unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer`);
        const n = Number(v);
        reqs.push((l) => k in l && /^-?\d+$/.test(l[k]) && (op === '<' ? Number(l[k]) < n : Number(l[k]) > n));
      } else {
        checkValue(v);
        if (op === '!=') reqs.push((l) => l[k] !== v);
        else reqs.push((l) => l[k] === v);
      }
    } else if (/^[^\s=!()]+$/.test(part)) {
      checkKey(part);
      reqs.push((l) => part in l);
    } else {
      throw new SelectorError(`unable to parse requirement: found '${part}', expected: in, notin, =, ==, !=, gt, lt`);
    }
  }
  return (labels) => reqs.every((r) => r(labels || {}));
}

/** Parses a field selector into [{field, op: '='|'!=', value}] (throws SelectorError). */
function parseFieldSelector(text) {
  if (!text || !text.trim()) return [];
  const out = [];
  for (const raw of text.split(/(?<!\\),/)) {
    const part = raw.trim();
    const m = /^([^=!]+?)\s*(==|=|!=)\s*(.*)$/.exec(part);
    if (!m) throw new SelectorError(`invalid selector: '${text}'; can't understand '${part}'`);
    out.push({ field: m[1], op: m[2] === '!=' ? '!=' : '=', value: m[3].replace(/\\([,=\\])/g, '$1') });
  }
  return out;
}

/** Reads a dotted field ("status.phase") from an object as a string ("" when absent). */
function fieldValue(obj, field) {
  let cur = obj;
  for (const p of field.split('.')) {
    if (cur === null || typeof cur !== 'object') return '';
    cur = cur[p];
  }
  if (cur === undefined || cur === null) return '';
  return String(cur);
}

function matchFields(obj, reqs) {
  return reqs.every((r) => (fieldValue(obj, r.field) === r.value) === (r.op === '='));
}

module.exports = { parseLabelSelector, parseFieldSelector, matchFields, SelectorError, fieldValue };
