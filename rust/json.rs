//! Payload encoding: `json.dumps(obj, allow_nan=False)`, byte for byte, for
//! the plain JSON types.
//!
//! Encoding payloads in Python cost more than writing them
//! (`benches/test_bench_honker.py`: enqueue and publish in batches). Here
//! exact `dict` (with `str` keys), `list`, `tuple`, `str`, `int`, `float`,
//! `bool` and `None` are encoded in Rust with `json.dumps`' defaults:
//! `", "` and `": "` separators, `ensure_ascii`, insertion order, floats as
//! `repr()` writes them. Anything else (subclasses, other key types, NaN,
//! lone surrogates, very deep nesting) goes to `alkdev_storage._checks.dumps`,
//! which encodes it the same way or raises the error a caller expects.
//! `tests/native/test_json.py` checks the parity with hypothesis.

use std::fmt::Write;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyModule, PyString, PyTuple};

/// Deeper than this, leave it to Python (and its recursion checks).
const MAX_DEPTH: usize = 64;

static PY_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// JSON text of `obj`, as `alkdev_storage._checks.dumps` makes it.
pub fn dumps(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let mut out = String::with_capacity(64);
    if encode(obj, &mut out, 0) {
        return Ok(out);
    }
    let py = obj.py();
    let fallback = PY_DUMPS.get_or_try_init(py, || {
        PyModule::import(py, "alkdev_storage._checks")?
            .getattr("dumps")
            .map(Bound::unbind)
    })?;
    fallback.call1(py, (obj,))?.extract(py)
}

/// Append `obj` to `out`; false if it needs the Python encoder.
fn encode(obj: &Bound<'_, PyAny>, out: &mut String, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return false;
    }
    if obj.is_none() {
        out.push_str("null");
    } else if let Ok(s) = obj.cast_exact::<PyString>() {
        return string(s, out);
    } else if let Ok(b) = obj.cast_exact::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(v) => {
                let _ = write!(out, "{v}");
            }
            Err(_) => match obj.str() {
                Ok(s) => out.push_str(&s.to_string_lossy()),
                Err(_) => return false,
            },
        }
    } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return float(f.value(), out);
    } else if let Ok(d) = obj.cast_exact::<PyDict>() {
        out.push('{');
        for (i, (k, v)) in d.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let Ok(key) = k.cast_exact::<PyString>() else {
                return false;
            };
            if !string(key, out) {
                return false;
            }
            out.push_str(": ");
            if !encode(&v, out, depth + 1) {
                return false;
            }
        }
        out.push('}');
    } else if let Ok(l) = obj.cast_exact::<PyList>() {
        return array(l.iter(), out, depth);
    } else if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return array(t.iter(), out, depth);
    } else {
        return false;
    }
    true
}

/// A JSON array of `items` (a list or a tuple).
fn array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut String,
    depth: usize,
) -> bool {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if !encode(&item, out, depth + 1) {
            return false;
        }
    }
    out.push(']');
    true
}

/// A JSON string with `ensure_ascii`: everything outside `' '..='~'` is
/// escaped, as `\uXXXX` (lowercase, surrogate pairs above U+FFFF) unless it
/// has a short form.
fn string(s: &Bound<'_, PyString>, out: &mut String) -> bool {
    let Ok(text) = s.to_str() else {
        return false; // lone surrogates: Python knows how to write them
    };
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    true
}

/// `repr(f)`: the shortest digits that round-trip, fixed notation for
/// decimal exponents -4..16, otherwise `d.ddde+XX`. NaN and infinities are
/// not JSON; the Python encoder raises for them.
fn float(f: f64, out: &mut String) -> bool {
    if !f.is_finite() {
        return false;
    }
    // `{:e}` gives the fewest digits that round-trip, but when two such
    // strings are equally near (the double is exactly halfway between them)
    // it may pick the upper one, where Python's repr rounds half to even:
    // format again to that many digits, correctly rounded, and keep it when
    // it still reads back as the same double.
    let shortest = format!("{f:e}");
    let precision = shortest
        .split_once('e')
        .map_or(0, |(m, _)| m.bytes().filter(u8::is_ascii_digit).count())
        .saturating_sub(1);
    let rounded = format!("{f:.precision$e}");
    let sci = if rounded.parse::<f64>() == Ok(f) {
        rounded
    } else {
        shortest
    };
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} writes an integer exponent");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp >= 0 {
            let whole = usize::try_from(exp).expect("non-negative") + 1;
            if digits.len() <= whole {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', whole - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..whole]);
                out.push('.');
                out.push_str(&digits[whole..]);
            }
        } else {
            out.push_str("0.");
            let zeros = usize::try_from(-exp - 1).expect("positive");
            out.extend(std::iter::repeat_n('0', zeros));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.abs());
    }
    true
}

/// `json.dumps(obj, allow_nan=False)`, encoded natively where possible.
#[pyfunction]
pub fn json_dumps(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    dumps(obj)
}
