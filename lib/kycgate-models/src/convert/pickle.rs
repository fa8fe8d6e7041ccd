//! Reads a PyTorch state_dict saved in the legacy (pre-1.6, non-zip) `torch.save` format, without
//! Python and without executing anything.
//!
//! The file is five pickles and the raw storages: a magic number, the format version (1001), a
//! `sys_info` dict (byte order, type sizes), the state_dict itself, the list of storage keys in
//! the order their data follows, then per storage a little-endian u64 element count and the
//! elements. The unpickler here is a small stack machine over only the opcodes such files use, and
//! the only "callables" it knows are the four globals a state_dict needs (`collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`, `torch.LongStorage`), interpreted as
//! data constructors. Any other opcode or global is refused, and every count and length is checked
//! against the bytes actually present.

use std::collections::HashMap;

/// `torch.serialization.MAGIC_NUMBER`.
const MAGIC_NUMBER: u128 = 0x1950a86a20f9469cfc6c;
/// `torch.serialization.PROTOCOL_VERSION`.
const PROTOCOL_VERSION: i64 = 1001;
/// Upper bound on opcodes in one pickle: far above a state_dict's few thousand, far below harm.
const MAX_OPS: usize = 1_000_000;
/// Upper bound on memo entries.
const MAX_MEMO: u32 = 1_000_000;

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The data ended inside a pickle or a storage.
    #[error("checkpoint truncated at byte {0}")]
    Truncated(usize),
    /// An opcode outside the supported set (the file is not a plain legacy state_dict).
    #[error("checkpoint uses unsupported pickle opcode 0x{op:02x} at byte {at}")]
    UnsupportedOpcode { op: u8, at: usize },
    /// A global other than the four a state_dict needs.
    #[error("checkpoint refers to `{0}`, which a state_dict does not need; refused")]
    UnsupportedGlobal(String),
    /// The pickles are well-formed but not what a legacy state_dict looks like.
    #[error("checkpoint is not a legacy PyTorch state_dict: {0}")]
    Format(String),
}

type Result<T> = std::result::Result<T, PickleError>;

fn format_err(what: impl Into<String>) -> PickleError {
    PickleError::Format(what.into())
}

/// Element type of a storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    I64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::I64 => 8,
        }
    }
}

/// The globals a legacy state_dict refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    Storage(Dtype),
}

impl Global {
    fn parse(module: &str, name: &str) -> Result<Self> {
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch", "FloatStorage") => Global::Storage(Dtype::F32),
            ("torch", "LongStorage") => Global::Storage(Dtype::I64),
            _ => return Err(PickleError::UnsupportedGlobal(format!("{module}.{name}"))),
        })
    }
}

/// A reference to (part of) a storage, as `_rebuild_tensor_v2` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Storage key (an index into the storages that follow the pickles).
    pub key: String,
    /// Element type of the storage.
    pub dtype: Dtype,
    /// Offset into the storage, in elements.
    pub offset: usize,
    /// Shape.
    pub shape: Vec<usize>,
    /// Strides, in elements.
    pub stride: Vec<usize>,
}

/// The values the unpickler builds.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage { key: String, dtype: Dtype },
    Tensor(TensorRef),
}

/// One tensor of the state_dict, materialised.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    /// Row-major (C order) values; `I64` storages are converted (they only hold counters).
    pub data: Vec<f32>,
}

/// A state_dict in file order.
#[derive(Debug, Clone)]
pub struct StateDict {
    pub tensors: Vec<(String, Tensor)>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or(PickleError::Truncated(self.pos))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A newline-terminated ASCII line (GLOBAL's operands).
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated(self.pos))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| format_err("GLOBAL name is not text"))?;
        self.pos += n + 1;
        Ok(s)
    }
}

/// The unpickler's state for one pickle.
struct Machine {
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine {
    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(format_err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| format_err("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value> {
        self.stack.last_mut().ok_or_else(|| format_err("empty stack"))
    }

    /// Everything pushed since the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| format_err("no MARK"))?;
        Ok(self.stack.split_off(mark))
    }

    fn put(&mut self, idx: u32) -> Result<()> {
        if idx >= MAX_MEMO {
            return Err(format_err("memo index out of range"));
        }
        let v = self.stack.last().cloned().ok_or_else(|| format_err("PUT on empty stack"))?;
        self.memo.insert(idx, v);
        Ok(())
    }

    fn get(&mut self, idx: u32) -> Result<()> {
        let v = self.memo.get(&idx).cloned().ok_or_else(|| format_err("GET of unset memo"))?;
        self.stack.push(v);
        Ok(())
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<()> {
        if items.len() % 2 != 0 {
            return Err(format_err("SETITEMS with an odd number of items"));
        }
        let Value::Dict(d) = self.top()? else {
            return Err(format_err("SETITEM on a non-dict"));
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, backward_hooks)`.
fn rebuild_tensor(args: Vec<Value>) -> Result<Value> {
    let ints = |v: &Value| -> Result<Vec<usize>> {
        match v {
            Value::Tuple(items) => items
                .iter()
                .map(|i| match i {
                    Value::Int(n) => usize::try_from(*n).map_err(|_| format_err("negative size")),
                    _ => Err(format_err("size/stride is not a tuple of ints")),
                })
                .collect(),
            _ => Err(format_err("size/stride is not a tuple")),
        }
    };
    match args.as_slice() {
        [Value::Storage { key, dtype }, Value::Int(offset), size, stride, Value::Bool(_), _hooks] => {
            let shape = ints(size)?;
            let stride = ints(stride)?;
            if shape.len() != stride.len() {
                return Err(format_err("size and stride differ in rank"));
            }
            Ok(Value::Tensor(TensorRef {
                key: key.clone(),
                dtype: *dtype,
                offset: usize::try_from(*offset).map_err(|_| format_err("negative offset"))?,
                shape,
                stride,
            }))
        }
        _ => Err(format_err("unexpected _rebuild_tensor_v2 arguments")),
    }
}

/// `persistent_load(('storage', StorageType, key, location, numel, view_metadata))`.
fn persistent_storage(pid: Value) -> Result<Value> {
    match pid {
        Value::Tuple(items) => match items.as_slice() {
            [Value::Str(tag), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(_), Value::None]
                if tag == "storage" =>
            {
                Ok(Value::Storage {
                    key: key.clone(),
                    dtype: *dtype,
                })
            }
            _ => Err(format_err("unexpected persistent id")),
        },
        _ => Err(format_err("persistent id is not a tuple")),
    }
}

/// Runs one pickle from the cursor's position to its STOP.
fn unpickle(c: &mut Cursor<'_>) -> Result<Value> {
    let mut m = Machine {
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    for _ in 0..MAX_OPS {
        let at = c.pos;
        let op = c.u8()?;
        match op {
            0x80 => {
                // PROTO: legacy checkpoints are protocol 2.
                if c.u8()? != 2 {
                    return Err(format_err("pickle protocol is not 2"));
                }
            }
            b'.' => return m.pop(),
            b'(' => m.marks.push(m.stack.len()),
            b'N' => m.stack.push(Value::None),
            0x88 => m.stack.push(Value::Bool(true)),
            0x89 => m.stack.push(Value::Bool(false)),
            b'K' => m.stack.push(Value::Int(i64::from(c.u8()?))),
            b'M' => m.stack.push(Value::Int(i64::from(c.u16()?))),
            b'J' => m.stack.push(Value::Int(i64::from(c.u32()? as i32))),
            0x8a => {
                // LONG1: little-endian two's complement, here only the 10-byte magic number.
                let n = usize::from(c.u8()?);
                if n > 16 {
                    return Err(format_err("LONG1 wider than 128 bits"));
                }
                let bytes = c.take(n)?;
                let mut v: u128 = 0;
                for (i, b) in bytes.iter().enumerate() {
                    v |= u128::from(*b) << (8 * i);
                }
                if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                    return Err(format_err("negative LONG1"));
                }
                m.stack.push(match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    // Only the magic number is this wide: keep it as text for the header check.
                    Err(_) => Value::Str(format!("{v:x}")),
                });
            }
            b'X' => {
                let n = c.u32()? as usize;
                let s = std::str::from_utf8(c.take(n)?).map_err(|_| format_err("BINUNICODE is not UTF-8"))?;
                m.stack.push(Value::Str(s.to_owned()));
            }
            b')' => m.stack.push(Value::Tuple(Vec::new())),
            b'}' => m.stack.push(Value::Dict(Vec::new())),
            b']' => m.stack.push(Value::List(Vec::new())),
            b't' => {
                let items = m.pop_mark()?;
                m.stack.push(Value::Tuple(items));
            }
            0x85 => {
                let a = m.pop()?;
                m.stack.push(Value::Tuple(vec![a]));
            }
            0x86 => {
                let b = m.pop()?;
                let a = m.pop()?;
                m.stack.push(Value::Tuple(vec![a, b]));
            }
            b'q' => m.put(u32::from(c.u8()?))?,
            b'r' => m.put(c.u32()?)?,
            b'h' => m.get(u32::from(c.u8()?))?,
            b'j' => m.get(c.u32()?)?,
            b'c' => {
                let module = c.line()?;
                let name = c.line()?;
                m.stack.push(Value::Global(Global::parse(module, name)?));
            }
            b'R' => {
                let args = m.pop()?;
                let callable = m.pop()?;
                let Value::Tuple(args) = args else {
                    return Err(format_err("REDUCE arguments are not a tuple"));
                };
                let v = match callable {
                    Value::Global(Global::OrderedDict) if args.is_empty() => Value::Dict(Vec::new()),
                    Value::Global(Global::RebuildTensorV2) => rebuild_tensor(args)?,
                    _ => return Err(format_err("REDUCE of something other than a known constructor")),
                };
                m.stack.push(v);
            }
            b'Q' => {
                let pid = m.pop()?;
                m.stack.push(persistent_storage(pid)?);
            }
            b's' => {
                let v = m.pop()?;
                let k = m.pop()?;
                m.set_items(vec![k, v])?;
            }
            b'u' => {
                let items = m.pop_mark()?;
                m.set_items(items)?;
            }
            b'e' => {
                let items = m.pop_mark()?;
                let Value::List(l) = m.top()? else {
                    return Err(format_err("APPENDS on a non-list"));
                };
                l.extend(items);
            }
            b'b' => {
                // BUILD on the state_dict sets its `_metadata` attribute (module versions): the
                // state is dropped, and BUILD on anything but a dict is refused.
                let _state = m.pop()?;
                if !matches!(m.top()?, Value::Dict(_)) {
                    return Err(format_err("BUILD on a non-dict"));
                }
            }
            other => return Err(PickleError::UnsupportedOpcode { op: other, at }),
        }
    }
    Err(format_err("pickle does not end"))
}

/// Reads a legacy `torch.save(state_dict)` file into its tensors (names as saved, in order).
pub fn read_state_dict(data: &[u8]) -> Result<StateDict> {
    let mut c = Cursor { data, pos: 0 };
    let magic = unpickle(&mut c)?;
    if magic != Value::Str(format!("{MAGIC_NUMBER:x}")) {
        return Err(format_err("no legacy torch.save magic number (a zip checkpoint?)"));
    }
    if unpickle(&mut c)? != Value::Int(PROTOCOL_VERSION) {
        return Err(format_err("unknown torch.save protocol version"));
    }
    let Value::Dict(sys_info) = unpickle(&mut c)? else {
        return Err(format_err("sys_info is not a dict"));
    };
    let little = sys_info
        .iter()
        .any(|(k, v)| *k == Value::Str("little_endian".into()) && *v == Value::Bool(true));
    if !little {
        return Err(format_err("checkpoint was not saved little-endian"));
    }
    let Value::Dict(entries) = unpickle(&mut c)? else {
        return Err(format_err("the saved object is not a dict"));
    };
    let Value::List(keys) = unpickle(&mut c)? else {
        return Err(format_err("storage key list missing"));
    };
    let storages = read_storages(&mut c, &keys, &entries)?;
    if c.pos != data.len() {
        return Err(format_err(format!("{} trailing bytes", data.len() - c.pos)));
    }
    let mut tensors = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            return Err(format_err("state_dict entry is not name -> tensor"));
        };
        let storage = storages
            .get(&t.key)
            .ok_or_else(|| format_err(format!("{name}: storage {} missing", t.key)))?;
        let tensor = materialise(&t, storage).map_err(|e| format_err(format!("{name}: {e}")))?;
        tensors.push((name, tensor));
    }
    Ok(StateDict { tensors })
}

/// The raw storages, in key-list order, each checked against its element type.
fn read_storages<'a>(
    c: &mut Cursor<'a>,
    keys: &[Value],
    entries: &[(Value, Value)],
) -> Result<HashMap<String, (Dtype, &'a [u8])>> {
    let dtypes: HashMap<&str, Dtype> = entries
        .iter()
        .filter_map(|(_, v)| match v {
            Value::Tensor(t) => Some((t.key.as_str(), t.dtype)),
            _ => None,
        })
        .collect();
    let mut out = HashMap::with_capacity(keys.len());
    for key in keys {
        let Value::Str(key) = key else {
            return Err(format_err("storage key is not a string"));
        };
        let dtype = *dtypes
            .get(key.as_str())
            .ok_or_else(|| format_err(format!("storage {key} is used by no tensor")))?;
        let numel = usize::try_from(c.u64()?).map_err(|_| PickleError::Truncated(c.pos))?;
        let len = numel.checked_mul(dtype.size()).ok_or(PickleError::Truncated(c.pos))?;
        out.insert(key.clone(), (dtype, c.take(len)?));
    }
    Ok(out)
}

/// Gathers a (possibly strided) view of a storage into a row-major f32 vector.
fn materialise(t: &TensorRef, (dtype, bytes): &(Dtype, &[u8])) -> std::result::Result<Tensor, String> {
    if *dtype != t.dtype {
        return Err("storage used with two element types".into());
    }
    let numel_storage = bytes.len() / dtype.size();
    let count: usize = t.shape.iter().product();
    // Largest element index the view touches; an empty tensor touches none.
    if count > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&n, &s)| (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d)));
        if last.is_none_or(|l| l >= numel_storage) {
            return Err("view reaches past its storage".into());
        }
    }
    let read = |i: usize| -> f32 {
        let at = i * dtype.size();
        match dtype {
            Dtype::F32 => f32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]),
            Dtype::I64 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&bytes[at..at + 8]);
                i64::from_le_bytes(a) as f32
            }
        }
    };
    let mut data = Vec::with_capacity(count);
    let mut index = vec![0usize; t.shape.len()];
    for _ in 0..count {
        let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        data.push(read(at));
        // Row-major increment of the multi-index.
        for axis in (0..index.len()).rev() {
            index[axis] += 1;
            if index[axis] < t.shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    Ok(Tensor {
        shape: t.shape.clone(),
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Value> {
        unpickle(&mut Cursor { data: bytes, pos: 0 })
    }

    #[test]
    fn small_pickles_decode() {
        // (1, True, 'ab') as protocol 2: PROTO 2, MARK, K 1, NEWTRUE, X len 'ab', TUPLE, STOP.
        let p = [0x80, 2, b'(', b'K', 1, 0x88, b'X', 2, 0, 0, 0, b'a', b'b', b't', b'.'];
        assert_eq!(
            run(&p).ok(),
            Some(Value::Tuple(vec![Value::Int(1), Value::Bool(true), Value::Str("ab".into())]))
        );
    }

    #[test]
    fn code_execution_and_unknown_opcodes_are_refused() {
        // GLOBAL os.system, as every malicious pickle starts.
        let evil = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R.";
        assert!(matches!(run(evil), Err(PickleError::UnsupportedGlobal(g)) if g == "os.system"));
        // STACK_GLOBAL (protocol 4) is not part of the supported set.
        assert!(matches!(
            run(&[0x80, 2, 0x93, b'.']),
            Err(PickleError::UnsupportedOpcode { op: 0x93, at: 2 })
        ));
        // REDUCE of a storage type is not a constructor this reader knows.
        let call = b"\x80\x02ctorch\nFloatStorage\n)R.";
        assert!(matches!(run(call), Err(PickleError::Format(_))));
    }

    #[test]
    fn truncation_and_bad_views_are_errors() {
        assert!(matches!(run(&[0x80, 2, b'X', 5, 0, 0, 0, b'a']), Err(PickleError::Truncated(_))));
        assert!(run(&[0x80, 2, b'(', b'.']).is_err(), "STOP with only a MARK");
        let t = TensorRef { key: "0".into(), dtype: Dtype::F32, offset: 1, shape: vec![2], stride: vec![1] };
        let bytes = [0u8; 8];
        assert!(materialise(&t, &(Dtype::F32, &bytes[..])).is_err(), "view past the end");
        let t = TensorRef { key: "0".into(), dtype: Dtype::F32, offset: 0, shape: vec![2, 2], stride: vec![1, 2] };
        let vals: Vec<u8> = [1f32, 2., 3., 4.].iter().flat_map(|v| v.to_le_bytes()).collect();
        let m = materialise(&t, &(Dtype::F32, &vals[..])).expect("transposed view");
        assert_eq!(m.data, vec![1., 3., 2., 4.]);
    }
}
