//! Python values <-> SQLite values.
//!
//! Conversion into [`Value`] happens with the GIL held, *before* any SQLite
//! work; conversion back into Python objects happens after the GIL is taken
//! again. Nothing in between touches a Python object, which is what lets the
//! statement itself run detached. The mapping is exact and total: NULL/None,
//! INTEGER/int (i64; a larger int is an error, never truncated), REAL/float,
//! TEXT/str (always valid UTF-8 on the way out, or an error), BLOB/bytes;
//! bool binds as 0/1. Anything else is a `ParameterTypeError` naming the
//! parameter.

use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyMapping, PyMemoryView,
    PyString, PyTuple,
};
use rusqlite::ffi;
use rusqlite::types::{Value, ValueRef};

use crate::errors::{py_error, Error, Result};

/// Statement parameters, already converted.
#[derive(Debug)]
pub enum Params {
    Positional(Vec<Value>),
    Named(Vec<(String, Value)>),
}

impl Params {
    pub const NONE: Params = Params::Positional(Vec::new());
}

/// Convert one Python value. `describe` names the parameter in errors.
pub fn to_value(obj: &Bound<'_, PyAny>, describe: &dyn Fn() -> String) -> PyResult<Value> {
    // Exact-type checks first: they are the common case and the cheapest.
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(s) = obj.cast_exact::<PyString>() {
        return Ok(Value::Text(text_of(s, describe)?));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return int_value(obj, describe);
    }
    if let Ok(f) = obj.cast_exact::<PyFloat>() {
        return Ok(Value::Real(f.value()));
    }
    if let Ok(b) = obj.cast_exact::<PyBool>() {
        return Ok(Value::Integer(i64::from(b.is_true())));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Value::Blob(b.as_bytes().to_vec()));
    }
    // Subclasses (IntEnum, str enums, float subclasses) and buffers.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Integer(i64::from(b.is_true())));
    }
    if obj.is_instance_of::<PyInt>() {
        return int_value(obj, describe);
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::Text(text_of(s, describe)?));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Value::Real(f.value()));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Value::Blob(b.to_vec()));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        let bytes = obj.call_method0("tobytes")?;
        let bytes = bytes.cast::<PyBytes>()?;
        return Ok(Value::Blob(bytes.as_bytes().to_vec()));
    }
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(py_error(
        obj.py(),
        "ParameterTypeError",
        format!(
            "{}: type '{type_name}' is not supported; use None, int, float, str, bytes or bool",
            describe()
        ),
        ffi::SQLITE_MISMATCH,
    ))
}

fn int_value(obj: &Bound<'_, PyAny>, describe: &dyn Fn() -> String) -> PyResult<Value> {
    match obj.extract::<i64>() {
        Ok(v) => Ok(Value::Integer(v)),
        Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Err(py_error(
            obj.py(),
            "ParameterOverflowError",
            format!(
                "{}: {} does not fit in SQLite's 64-bit INTEGER; store it as TEXT",
                describe(),
                obj.str().map(|s| s.to_string()).unwrap_or_default()
            ),
            ffi::SQLITE_MISMATCH,
        )),
        Err(e) => Err(e),
    }
}

fn text_of(s: &Bound<'_, PyString>, describe: &dyn Fn() -> String) -> PyResult<String> {
    match s.to_str() {
        Ok(t) => Ok(t.to_owned()),
        // Lone surrogates cannot be stored as UTF-8 text.
        Err(_) => Err(py_error(
            s.py(),
            "ParameterTypeError",
            format!(
                "{}: str contains lone surrogates and cannot be encoded as UTF-8",
                describe()
            ),
            ffi::SQLITE_MISMATCH,
        )),
    }
}

/// Convert a parameter set: `None`, a sequence (positional) or a mapping
/// (named). Strings and bytes are refused: they are sequences by accident.
pub fn to_params(params: Option<&Bound<'_, PyAny>>) -> PyResult<Params> {
    let Some(obj) = params else {
        return Ok(Params::NONE);
    };
    if obj.is_none() {
        return Ok(Params::NONE);
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return positional(t.iter());
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return positional(l.iter());
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return named(d.iter());
    }
    if obj.is_instance_of::<PyString>()
        || obj.is_instance_of::<PyBytes>()
        || obj.is_instance_of::<PyByteArray>()
    {
        return Err(bad_params(obj));
    }
    if let Ok(m) = obj.cast::<PyMapping>() {
        let items = m.items()?;
        let pairs: Vec<(Bound<'_, PyAny>, Bound<'_, PyAny>)> = items
            .iter()
            .map(|item| item.extract())
            .collect::<PyResult<_>>()?;
        return named(pairs.into_iter());
    }
    match obj.try_iter() {
        Ok(it) => {
            let items: Vec<Bound<'_, PyAny>> = it.collect::<PyResult<_>>()?;
            positional(items.into_iter())
        }
        Err(_) => Err(bad_params(obj)),
    }
}

/// Convert parameters (`None`, a tuple or a list, or a dict of named ones)
/// whose values are all of the exact types stored as they are (None, int,
/// float, str, bytes, bool). `None` when anything else is there: the caller
/// then takes a path that adapts values first (`dbapi`'s dates and times).
pub fn plain_params(params: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Params>> {
    let Some(obj) = params else {
        return Ok(Some(Params::NONE));
    };
    if obj.is_none() {
        return Ok(Some(Params::NONE));
    }
    if let Ok(t) = obj.cast_exact::<PyTuple>() {
        return all_plain(t.iter())
            .then(|| positional(t.iter()))
            .transpose();
    }
    if let Ok(l) = obj.cast_exact::<PyList>() {
        return all_plain(l.iter())
            .then(|| positional(l.iter()))
            .transpose();
    }
    if let Ok(d) = obj.cast_exact::<PyDict>() {
        return all_plain(d.values().iter())
            .then(|| named(d.iter()))
            .transpose();
    }
    Ok(None)
}

/// True when every value is of a type stored as it is (see `plain_params`).
fn all_plain<'py>(mut values: impl Iterator<Item = Bound<'py, PyAny>>) -> bool {
    values.all(|v| {
        v.is_none()
            || v.is_exact_instance_of::<PyString>()
            || v.is_exact_instance_of::<PyInt>()
            || v.is_exact_instance_of::<PyFloat>()
            || v.is_exact_instance_of::<PyBytes>()
            || v.is_exact_instance_of::<PyBool>()
    })
}

fn bad_params(obj: &Bound<'_, PyAny>) -> PyErr {
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_default();
    py_error(
        obj.py(),
        "ParameterTypeError",
        format!("parameters must be a sequence or a mapping, not {type_name}"),
        ffi::SQLITE_MISMATCH,
    )
}

fn positional<'py>(items: impl Iterator<Item = Bound<'py, PyAny>>) -> PyResult<Params> {
    let values = items
        .enumerate()
        .map(|(i, v)| to_value(&v, &|| format!("parameter {}", i + 1)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(Params::Positional(values))
}

fn named<'py>(
    items: impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)>,
) -> PyResult<Params> {
    let mut pairs = Vec::new();
    for (k, v) in items {
        let key = k.cast::<PyString>().map_err(|_| {
            py_error(
                k.py(),
                "ParameterTypeError",
                "named parameter keys must be str".into(),
                ffi::SQLITE_MISMATCH,
            )
        })?;
        let key = key.to_str()?.to_owned();
        let value = to_value(&v, &|| format!("parameter {key:?}"))?;
        pairs.push((key, value));
    }
    Ok(Params::Named(pairs))
}

/// Read one column into an owned value, checking TEXT is valid UTF-8.
pub fn read_value(value: ValueRef<'_>, column: &dyn Fn() -> String) -> Result<Value> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Value::Text(s.to_owned()),
            Err(_) => return Err(Error::InvalidUtf8 { column: column() }),
        },
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    })
}

/// Build the Python object for one value.
pub fn to_py<'py>(py: Python<'py>, value: &Value) -> Bound<'py, PyAny> {
    match value {
        Value::Null => py.None().into_bound(py),
        Value::Integer(i) => i
            .into_pyobject(py)
            .map(Bound::into_any)
            .unwrap_or_else(|e| match e {}),
        Value::Real(f) => PyFloat::new(py, *f).into_any(),
        Value::Text(s) => PyString::new(py, s).into_any(),
        Value::Blob(b) => PyBytes::new(py, b).into_any(),
    }
}
