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
//!
//! Documents (graph attributes) are encoded the same way under limits, in
//! the same single pass: nesting deeper than the limit, a key that is not a
//! `str`, or text longer than the limit is refused (`LimitExceededError`,
//! `InvalidInputError`) before anything reaches the Python encoder, whose
//! recursion a deep document would exhaust.

use std::fmt::Write;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyModule, PyString, PyTuple};

use crate::errors::storage_error;

/// Payloads deeper than this are left to Python (and its recursion checks).
const MAX_DEPTH: usize = 64;

static PY_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Why the encoder stopped before the end.
enum Stop {
    /// Something only the Python encoder writes (or refuses) right.
    Python,
    /// Nested deeper than `Bounds::depth`.
    TooDeep,
    /// A dict key that is not a `str`: its type's name.
    Key(String),
    /// The text grew past `Bounds::bytes`.
    TooLarge,
}

/// What one encoding may do.
struct Bounds {
    depth: usize,
    bytes: usize,
    /// Refuse (instead of leaving to Python) deep nesting and non-`str` keys.
    strict: bool,
}

type Encoded = Result<(), Stop>;

/// JSON text of `obj`, as `alkdev_storage._checks.dumps` makes it.
pub fn dumps(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    let mut out = String::with_capacity(64);
    let bounds = Bounds {
        depth: MAX_DEPTH,
        bytes: usize::MAX,
        strict: false,
    };
    if encode(obj, &mut out, 0, &bounds).is_ok() {
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

/// Append `obj` to `out`, within `bounds`.
fn encode(obj: &Bound<'_, PyAny>, out: &mut String, depth: usize, bounds: &Bounds) -> Encoded {
    if depth > bounds.depth {
        if !bounds.strict {
            return Err(Stop::Python);
        }
        // The limit counts containers; a scalar inside the deepest is fine.
        if obj.is_instance_of::<PyDict>()
            || obj.is_instance_of::<PyList>()
            || obj.is_instance_of::<PyTuple>()
        {
            return Err(Stop::TooDeep);
        }
    }
    if obj.is_none() {
        out.push_str("null");
    } else if let Ok(s) = obj.cast_exact::<PyString>() {
        string(s, out)?;
    } else if let Ok(b) = obj.cast_exact::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if obj.is_exact_instance_of::<PyInt>() {
        match obj.extract::<i64>() {
            Ok(v) => {
                let _ = write!(out, "{v}");
            }
            Err(_) => match obj.str() {
                Ok(s) => out.push_str(&s.to_string_lossy()),
                Err(_) => return Err(Stop::Python),
            },
        }
    } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
        float(f.value(), out)?;
    } else if let Ok(d) = obj.cast_exact::<PyDict>() {
        out.push('{');
        for (i, (k, v)) in d.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let Ok(key) = k.cast_exact::<PyString>() else {
                if bounds.strict && !k.is_instance_of::<PyString>() {
                    let name = k
                        .get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string());
                    return Err(Stop::Key(name));
                }
                return Err(Stop::Python);
            };
            string(key, out)?;
            out.push_str(": ");
            encode(&v, out, depth + 1, bounds)?;
            if out.len() > bounds.bytes {
                return Err(Stop::TooLarge);
            }
        }
        out.push('}');
    } else if let Ok(l) = obj.cast_exact::<PyList>() {
        array(l.iter(), out, depth, bounds)?;
    } else if let Ok(t) = obj.cast_exact::<PyTuple>() {
        array(t.iter(), out, depth, bounds)?;
    } else {
        return Err(Stop::Python);
    }
    if out.len() > bounds.bytes {
        return Err(Stop::TooLarge);
    }
    Ok(())
}

/// A JSON array of `items` (a list or a tuple).
fn array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut String,
    depth: usize,
    bounds: &Bounds,
) -> Encoded {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        encode(&item, out, depth + 1, bounds)?;
        if out.len() > bounds.bytes {
            return Err(Stop::TooLarge);
        }
    }
    out.push(']');
    Ok(())
}

/// A JSON string with `ensure_ascii`: everything outside `' '..='~'` is
/// escaped, as `\uXXXX` (lowercase, surrogate pairs above U+FFFF) unless it
/// has a short form.
fn string(s: &Bound<'_, PyString>, out: &mut String) -> Encoded {
    let Ok(text) = s.to_str() else {
        return Err(Stop::Python); // lone surrogates: Python knows how to write them
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
    Ok(())
}

/// `repr(f)`: the shortest digits that round-trip, fixed notation for
/// decimal exponents -4..16, otherwise `d.ddde+XX`. NaN and infinities are
/// not JSON; the Python encoder raises for them.
fn float(f: f64, out: &mut String) -> Encoded {
    if !f.is_finite() {
        return Err(Stop::Python);
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
    Ok(())
}

/// `json.dumps(obj, allow_nan=False)`, encoded natively where possible.
#[pyfunction]
pub fn json_dumps(obj: &Bound<'_, PyAny>) -> PyResult<String> {
    dumps(obj)
}

/// A document (`what`: "attributes", ...) as JSON text, within limits:
/// nested at most `max_depth` containers deep, keys all `str`, at most
/// `max_bytes` of text (ASCII: characters are bytes). None when only the
/// Python encoder can write it (see the module note); the caller then checks
/// the same limits in Python.
#[pyfunction]
pub fn json_document(
    obj: &Bound<'_, PyAny>,
    what: &str,
    max_depth: usize,
    max_bytes: usize,
) -> PyResult<Option<String>> {
    let mut out = String::with_capacity(64);
    let bounds = Bounds {
        depth: max_depth,
        bytes: max_bytes,
        strict: true,
    };
    let py = obj.py();
    match encode(obj, &mut out, 1, &bounds) {
        Ok(()) => Ok(Some(out)),
        Err(Stop::Python) => Ok(None),
        Err(Stop::TooDeep) => Err(storage_error(
            py,
            "LimitExceededError",
            format!("{what} are nested more than {max_depth} levels deep (Limits.json_depth)"),
        )),
        Err(Stop::Key(kind)) => Err(storage_error(
            py,
            "InvalidInputError",
            format!("{what}: every key must be a str, not {kind}"),
        )),
        Err(Stop::TooLarge) => Err(storage_error(
            py,
            "LimitExceededError",
            format!("{what} are longer than {max_bytes} bytes as JSON (Limits.document_bytes)"),
        )),
    }
}
