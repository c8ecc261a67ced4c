//! `SchemaValidator`: a JSON Schema compiled once (the `jsonschema` crate),
//! then checked against many documents.
//!
//! Invariants: a `SchemaValidator` only exists for a schema that is valid
//! against its draft's meta-schema and compiles with every reference
//! resolved *inside* the schema document: retrieval is switched off
//! (`offline()`, and the crate is built without its HTTP and file
//! retrievers), so a remote `$ref` is an invalid schema, never a fetch.
//! Documents are converted from Python into `serde_json::Value` with the GIL
//! held; validation runs on that copy, with the GIL released once the work
//! is large enough to pay for it (`DETACH_WORK`; `validate_many` chunks
//! always are); violations come back as `(instance JSON pointer, message)`
//! pairs, sorted and without duplicates, so equal inputs always give equal
//! lists.

use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, Validator};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

use crate::detach::detached;
use crate::errors::storage_error;

/// Deeper than this, a document is refused rather than risking the stack
/// (serde_json's parser stops at the same depth).
const MAX_DEPTH: usize = 128;

/// Validation work (see `Converter`) from which the GIL is released: about
/// a thousand values, some tens of microseconds of validation.
const DETACH_WORK: usize = 1_000;

/// Documents `validate_many` converts before validating them: enough to
/// amortise releasing the GIL, few enough that the converted copies stay in
/// cache (converting 10,000 before validating any ran at half the speed).
const MANY_CHUNK: usize = 256;

/// One violation: where in the document, and what is wrong there.
type Violation = (String, String);

/// Why a Python value has no JSON counterpart. `path` holds the keys and
/// indexes leading to it, innermost first: it is only built while an error
/// unwinds, so converting a valid document costs nothing for it.
struct NotJson {
    problem: Problem,
    path: Vec<String>,
}

enum Problem {
    /// A type JSON has no counterpart for (set, bytes, datetime...).
    Type(String),
    /// A dict key that is not a str.
    Key(String),
    /// NaN or an infinity.
    NotFinite(f64),
    /// An int outside the 64-bit range the validator compares exactly.
    BigInt(String),
    /// A str holding lone surrogates (no UTF-8 form).
    Surrogates,
    /// Nested deeper than `MAX_DEPTH` (or a container holding itself).
    TooDeep,
}

impl NotJson {
    fn new(problem: Problem) -> Self {
        NotJson {
            problem,
            path: Vec::new(),
        }
    }

    fn at(mut self, segment: String) -> Self {
        self.path.push(segment);
        self
    }

    /// The Python exception, naming `what` ("instance", "instances[3]",
    /// "schema") and the JSON pointer of the bad value.
    fn into_pyerr(self, what: &str) -> PyErr {
        let mut pointer = String::new();
        for segment in self.path.iter().rev() {
            pointer.push('/');
            pointer.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        }
        let at = if pointer.is_empty() {
            format!("{what} (the top-level value)")
        } else {
            format!("{what} at {pointer}")
        };
        match self.problem {
            Problem::Type(name) => crate::errors::input_type(format!(
                "{at}: type '{name}' is not JSON; use dict, list, tuple, str, int, float, bool \
                 or None"
            )),
            Problem::Key(name) => {
                crate::errors::input_type(format!("{at}: dict keys must be str, not '{name}'"))
            }
            Problem::NotFinite(f) => crate::errors::invalid_input(format!(
                "{at}: {} is not JSON (NaN and infinities have no JSON form)",
                python_float(f)
            )),
            Problem::BigInt(digits) => crate::errors::invalid_input(format!(
                "{at}: {digits} is outside the 64-bit integer range that schema validation \
                 compares exactly; store it as a string"
            )),
            Problem::Surrogates => crate::errors::invalid_input(format!(
                "{at}: str contains lone surrogates and has no UTF-8 form"
            )),
            Problem::TooDeep => crate::errors::invalid_input(format!(
                "{at}: nested deeper than {MAX_DEPTH} levels (or a container that contains itself)"
            )),
        }
    }
}

fn python_float(f: f64) -> &'static str {
    if f.is_nan() {
        "nan"
    } else if f > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Converts Python values to JSON and tallies the work they will cost to
/// validate (one unit per value, one per 32 bytes of text): that tally
/// decides whether releasing the GIL is worth it.
#[derive(Default)]
struct Converter {
    work: usize,
}

impl Converter {
    /// Convert a Python value to JSON: the exact types first (the common
    /// case), then their subclasses (str and int enums, `OrderedDict`, named
    /// tuples...), read as the base type just as `json.dumps` reads them.
    fn value(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, NotJson> {
        if depth > MAX_DEPTH {
            return Err(NotJson::new(Problem::TooDeep));
        }
        self.work += 1;
        if obj.is_none() {
            return Ok(Value::Null);
        }
        if let Ok(s) = obj.cast_exact::<PyString>() {
            return self.string(s).map(Value::String);
        }
        if let Ok(b) = obj.cast_exact::<PyBool>() {
            return Ok(Value::Bool(b.is_true()));
        }
        if obj.is_exact_instance_of::<PyInt>() {
            return int(obj);
        }
        if let Ok(f) = obj.cast_exact::<PyFloat>() {
            return float(f.value());
        }
        if let Ok(d) = obj.cast::<PyDict>() {
            return self.object(d, depth);
        }
        if let Ok(l) = obj.cast::<PyList>() {
            return self.array(l.iter(), l.len(), depth);
        }
        if let Ok(t) = obj.cast::<PyTuple>() {
            return self.array(t.iter(), t.len(), depth);
        }
        if let Ok(s) = obj.cast::<PyString>() {
            return self.string(s).map(Value::String);
        }
        if obj.is_instance_of::<PyInt>() {
            return int(obj);
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            return float(f.value());
        }
        Err(NotJson::new(Problem::Type(type_name(obj))))
    }

    fn string(&mut self, s: &Bound<'_, PyString>) -> Result<String, NotJson> {
        let text = s.to_str().map_err(|_| NotJson::new(Problem::Surrogates))?;
        self.work += text.len() / 32;
        Ok(text.to_owned())
    }

    fn object(&mut self, d: &Bound<'_, PyDict>, depth: usize) -> Result<Value, NotJson> {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let Ok(key) = k.cast::<PyString>() else {
                let repr = k.repr().map(|r| r.to_string()).unwrap_or_default();
                return Err(NotJson::new(Problem::Key(type_name(&k))).at(repr));
            };
            let key = match self.string(key) {
                Ok(key) => key,
                Err(e) => return Err(e.at(key.to_string_lossy().into_owned())),
            };
            match self.value(&v, depth + 1) {
                Ok(value) => {
                    map.insert(key, value);
                }
                Err(e) => return Err(e.at(key)),
            }
        }
        Ok(Value::Object(map))
    }

    fn array<'py>(
        &mut self,
        items: impl Iterator<Item = Bound<'py, PyAny>>,
        len: usize,
        depth: usize,
    ) -> Result<Value, NotJson> {
        let mut out = Vec::with_capacity(len);
        for (i, item) in items.enumerate() {
            out.push(
                self.value(&item, depth + 1)
                    .map_err(|e| e.at(i.to_string()))?,
            );
        }
        Ok(Value::Array(out))
    }

    /// `obj` as JSON; errors name `what` and the bad value's place.
    fn convert(&mut self, obj: &Bound<'_, PyAny>, what: &dyn Fn() -> String) -> PyResult<Value> {
        self.value(obj, 0).map_err(|e| e.into_pyerr(&what()))
    }
}

fn int(obj: &Bound<'_, PyAny>) -> Result<Value, NotJson> {
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(Value::Number(v.into()));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(Value::Number(v.into()));
    }
    let digits = obj.str().map(|s| s.to_string()).unwrap_or_default();
    Err(NotJson::new(Problem::BigInt(digits)))
}

fn float(f: f64) -> Result<Value, NotJson> {
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| NotJson::new(Problem::NotFinite(f)))
}

/// Run `work` with the GIL released if `cost` says it is worth it. Below
/// the threshold, validating takes a few microseconds: releasing and taking
/// back the GIL would cost more than that, and under contention each
/// release hands the GIL to another thread for up to a switch interval.
/// Measured beside one busy Python thread: 10,000 per-document `validate`
/// calls took 4x as long as alone when each released the GIL, 2.5x when
/// they keep it.
fn maybe_detached<T, F>(py: Python<'_>, cost: usize, work: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    if cost >= DETACH_WORK {
        detached(py, work)
    } else {
        work()
    }
}

/// Every violation of `instance`, sorted by pointer then message. Valid
/// documents (the common case) only pay for `is_valid`, which stops early
/// and builds no error values.
fn violations(validator: &Validator, instance: &Value) -> Vec<Violation> {
    if validator.is_valid(instance) {
        return Vec::new();
    }
    let mut found: Vec<Violation> = validator
        .iter_errors(instance)
        .map(|e| (e.instance_path().as_str().to_owned(), e.to_string()))
        .collect();
    found.sort_unstable();
    // The same message at the same place from two subschemas says nothing new.
    found.dedup();
    found
}

fn to_pylist<'py>(py: Python<'py>, found: Vec<Violation>) -> PyResult<Bound<'py, PyList>> {
    PyList::new(py, found)
}

fn draft_name(draft: Draft) -> &'static str {
    match draft {
        Draft::Draft4 => "4",
        Draft::Draft6 => "6",
        Draft::Draft7 => "7",
        Draft::Draft201909 => "2019-09",
        Draft::Draft202012 => "2020-12",
        _ => "unknown",
    }
}

/// Why a schema cannot be compiled, as the text of `InvalidSchemaError`.
/// Meta-schema violations are all listed, each at its place in the schema;
/// a compile failure (bad regex, unresolvable or remote `$ref`) names its
/// own place.
fn compile(schema: &Value, validate_formats: bool) -> Result<Validator, String> {
    if !(schema.is_object() || schema.is_boolean()) {
        return Err(format!(
            "a JSON Schema must be an object or a boolean, not {}",
            json_kind(schema)
        ));
    }
    if Draft::default().detect(schema) == Draft::Unknown {
        // Its meta-schema could only be fetched, and nothing is fetched.
        let uri = schema
            .get("$schema")
            .map(Value::to_string)
            .unwrap_or_default();
        return Err(format!(
            "invalid JSON Schema at /$schema: unknown draft {uri}; use the URI of draft 4, 6, \
             7, 2019-09 or 2020-12 (or omit \"$schema\" for 2020-12)"
        ));
    }
    // Checking against the meta-schema first reports every problem, where
    // `build` stops at the first.
    let meta = jsonschema::meta::validator_for(schema)
        .map_err(|e| format!("invalid JSON Schema at /$schema: {e}"))?;
    let mut problems: Vec<Violation> = meta
        .iter_errors(schema)
        .map(|e| (e.instance_path().as_str().to_owned(), e.to_string()))
        .collect();
    if !problems.is_empty() {
        problems.sort_unstable();
        problems.dedup();
        let listed: Vec<String> = problems
            .iter()
            .map(|(at, message)| format!("at {}: {message}", pointer_or_root(at)))
            .collect();
        return Err(format!(
            "not a valid JSON Schema ({} problem{}): {}",
            listed.len(),
            if listed.len() == 1 { "" } else { "s" },
            listed.join("; ")
        ));
    }
    jsonschema::options()
        .offline()
        .should_validate_formats(validate_formats)
        .build(schema)
        .map_err(|e| {
            if let ValidationErrorKind::Referencing(why) = e.kind() {
                let message = why.to_string();
                return format!(
                    "invalid JSON Schema at {}: a reference cannot be resolved within the \
                     schema (remote references are never fetched): {message}",
                    references_in(schema, &message)
                );
            }
            let at = e.instance_path().as_str();
            format!("invalid JSON Schema at {}: {e}", pointer_or_root(at))
        })
}

/// Where `schema` holds the reference a resolution error is about. The
/// crate reports these errors at the root; to point at the `$ref` itself,
/// take every reference whose target the message quotes.
fn references_in(schema: &Value, message: &str) -> String {
    fn walk(value: &Value, pointer: &mut String, message: &str, found: &mut Vec<String>) {
        let len = pointer.len();
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    pointer.push('/');
                    pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                    let is_ref = matches!(key.as_str(), "$ref" | "$dynamicRef" | "$recursiveRef");
                    match child {
                        Value::String(target) if is_ref => {
                            // The message quotes the fragment ('/$defs/x' or
                            // an anchor) or the document's resolved URI,
                            // which ends with the document part as written.
                            let (document, fragment) =
                                target.split_once('#').unwrap_or((target, ""));
                            if (!fragment.is_empty() && message.contains(&format!("'{fragment}'")))
                                || (!document.is_empty()
                                    && message.contains(&format!("{document}'")))
                            {
                                found.push(pointer.clone());
                            }
                        }
                        _ => walk(child, pointer, message, found),
                    }
                    pointer.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    pointer.push('/');
                    pointer.push_str(&i.to_string());
                    walk(child, pointer, message, found);
                    pointer.truncate(len);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(schema, &mut String::new(), message, &mut found);
    if found.is_empty() {
        "the root".into()
    } else {
        found.join(", ")
    }
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() {
        "the root"
    } else {
        pointer
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A JSON Schema, compiled once, that validates many documents.
///
/// `schema` is a dict or bool, or its JSON text. The draft comes from
/// `$schema` (Draft 2020-12 when absent). `format` is an annotation unless
/// `validate_formats=True`. References resolve only inside the schema: a
/// remote `$ref` raises `InvalidSchemaError`, as does any schema its
/// meta-schema rejects. Each violation is `(JSON pointer, message)`:
///
/// >>> from alkdev_storage._native import SchemaValidator
/// >>> v = SchemaValidator({
/// ...     "type": "object",
/// ...     "required": ["title"],
/// ...     "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
/// ... })
/// >>> v.validate({"tags": ["a", 2]})
/// [('', '"title" is a required property'), ('/tags/1', '2 is not of type "string"')]
/// >>> v.is_valid({"title": "ok", "tags": []})
/// True
#[pyclass(frozen, module = "alkdev_storage._native", name = "SchemaValidator")]
pub struct SchemaValidator {
    validator: Validator,
    /// Canonical text: compact, object keys sorted.
    text: String,
}

impl SchemaValidator {
    /// Validate converted documents, appending one list per document to
    /// `out`. The documents are dropped before the GIL is taken back.
    fn validate_chunk(
        &self,
        py: Python<'_>,
        chunk: Vec<Value>,
        work: usize,
        out: &Bound<'_, PyList>,
    ) -> PyResult<()> {
        let found: Vec<Vec<Violation>> = maybe_detached(py, work, move || {
            chunk
                .iter()
                .map(|value| violations(&self.validator, value))
                .collect()
        });
        for one in found {
            out.append(to_pylist(py, one)?)?;
        }
        Ok(())
    }
}

#[pymethods]
impl SchemaValidator {
    #[new]
    #[pyo3(signature = (schema, *, validate_formats=false))]
    fn new(py: Python<'_>, schema: &Bound<'_, PyAny>, validate_formats: bool) -> PyResult<Self> {
        let value = if let Ok(text) = schema.cast::<PyString>() {
            let text = text.to_str()?;
            detached(py, || serde_json::from_str::<Value>(text)).map_err(|e| {
                storage_error(
                    py,
                    "InvalidSchemaError",
                    format!("the schema text is not valid JSON: {e}"),
                )
            })?
        } else {
            Converter::default().convert(schema, &|| "schema".into())?
        };
        let (compiled, value) = detached(py, move || {
            let compiled = compile(&value, validate_formats);
            (compiled, value)
        });
        let validator =
            compiled.map_err(|message| storage_error(py, "InvalidSchemaError", message))?;
        Ok(SchemaValidator {
            validator,
            text: canonical(&value),
        })
    }

    /// Every violation as `(instance JSON pointer, message)`, sorted; `[]`
    /// when `instance` is valid.
    fn validate<'py>(
        &self,
        py: Python<'py>,
        instance: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut converter = Converter::default();
        let value = converter.convert(instance, &|| "instance".into())?;
        let found = maybe_detached(py, converter.work, || violations(&self.validator, &value));
        to_pylist(py, found)
    }

    /// Whether `instance` is valid (stops at the first violation).
    fn is_valid(&self, py: Python<'_>, instance: &Bound<'_, PyAny>) -> PyResult<bool> {
        let mut converter = Converter::default();
        let value = converter.convert(instance, &|| "instance".into())?;
        Ok(maybe_detached(py, converter.work, || {
            self.validator.is_valid(&value)
        }))
    }

    /// `validate` for a document given as JSON text.
    fn validate_json<'py>(
        &self,
        py: Python<'py>,
        text: &Bound<'py, PyString>,
    ) -> PyResult<Bound<'py, PyList>> {
        let text = text.to_str()?;
        let found = maybe_detached(py, text.len() / 32, || {
            serde_json::from_str::<Value>(text).map(|value| violations(&self.validator, &value))
        })
        .map_err(|e| {
            crate::errors::invalid_input(format!("instance text is not valid JSON: {e}"))
        })?;
        to_pylist(py, found)
    }

    /// `validate` for each document of `instances`, in one call. Documents
    /// are converted a chunk at a time, and each chunk is validated with the
    /// GIL released.
    fn validate_many<'py>(
        &self,
        py: Python<'py>,
        instances: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        if instances.is_instance_of::<PyString>() || instances.is_instance_of::<PyDict>() {
            // Iterating would validate its characters or keys, silently.
            return Err(crate::errors::input_type(format!(
                "validate_many takes an iterable of documents, not one '{}'; use validate() \
                 for a single document",
                type_name(instances)
            )));
        }
        let out = PyList::empty(py);
        let mut chunk = Vec::with_capacity(MANY_CHUNK);
        let mut converter = Converter::default();
        for (i, item) in instances.try_iter()?.enumerate() {
            chunk.push(converter.convert(&item?, &|| format!("instances[{i}]"))?);
            if chunk.len() == MANY_CHUNK {
                self.validate_chunk(py, std::mem::take(&mut chunk), converter.work, &out)?;
                converter.work = 0;
            }
        }
        if !chunk.is_empty() {
            self.validate_chunk(py, chunk, converter.work, &out)?;
        }
        Ok(out)
    }

    /// The schema as canonical JSON text (compact, object keys sorted).
    #[getter]
    fn schema(&self) -> &str {
        &self.text
    }

    /// The draft in use: "4", "6", "7", "2019-09" or "2020-12".
    #[getter]
    fn draft(&self) -> &'static str {
        draft_name(self.validator.draft())
    }

    fn __repr__(&self) -> String {
        const SHOWN: usize = 60;
        let text = match self.text.char_indices().nth(SHOWN) {
            Some((cut, _)) => format!("{}...", &self.text[..cut]),
            None => self.text.clone(),
        };
        format!("<SchemaValidator draft={} {text}>", self.draft())
    }
}

/// Compact JSON with object keys sorted, whatever order the map keeps them
/// in (serde_json's `preserve_order` may be switched on by another crate).
fn canonical(value: &Value) -> String {
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                Value::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| (k.clone(), sorted(v)))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(value).to_string()
}
