//! One forward pass over several sequences: their rows go through every matrix product
//! together (each weight read once for all of them), and each sequence attends over its own
//! cache only.
//!
//! Batch invariance rests here: every operation on the concatenated rows works row by row
//! (embedding, norms, rotary, quantized products whose kernels give a row the same bits
//! whatever rows share the product, see `kernels/`), and attention runs per sequence and per
//! query (`attention.rs`), so a sequence's logits do not depend on its companions or on how
//! its prompt was cut into chunks.

use candle_core::Tensor;

use super::attention::{Heads, KvCache};

/// One sequence's share of a step: tokens at positions `pos..`, into its caches (one per
/// layer).
pub struct SeqRows<'a> {
    pub tokens: &'a [u32],
    pub pos: usize,
    pub caches: &'a mut [KvCache],
    /// Whether its last row's logits are wanted.
    pub logits: bool,
}

/// Where each sequence's rows sit among the step's rows.
pub struct StepRows {
    ids: Vec<u32>,
    positions: Vec<u32>,
    /// Each sequence's first row and row count.
    spans: Vec<(usize, usize)>,
    /// Whether each sequence wants its logits.
    wanted: Vec<bool>,
}

impl StepRows {
    /// The rows of `seqs`, one sequence after another. Fails on a sequence with no tokens.
    pub fn new(seqs: &[SeqRows<'_>]) -> candle_core::Result<Self> {
        let total = seqs.iter().map(|s| s.tokens.len()).sum();
        let mut rows = Self {
            ids: Vec::with_capacity(total),
            positions: Vec::with_capacity(total),
            spans: Vec::with_capacity(seqs.len()),
            wanted: seqs.iter().map(|s| s.logits).collect(),
        };
        for seq in seqs {
            if seq.tokens.is_empty() {
                candle_core::bail!("a sequence with no tokens in a forward step");
            }
            let end = u32::try_from(seq.pos + seq.tokens.len())
                .map_err(|_| candle_core::Error::Msg("position beyond u32".to_owned()))?;
            rows.spans.push((rows.ids.len(), seq.tokens.len()));
            rows.ids.extend_from_slice(seq.tokens);
            rows.positions.extend(end - seq.tokens.len() as u32..end);
        }
        Ok(rows)
    }

    /// Every row's token id.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Every row's position in its own sequence.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Appends each sequence's rows of `k` and `v` (`(1, rows, kv_heads, head_dim)`, rotated)
    /// to its cache of `layer` and attends its rows of `q` (`(1, rows, heads, head_dim)`) over
    /// that cache. Returns `(1, rows, heads * head_dim)`.
    pub fn attend(
        &self,
        seqs: &mut [SeqRows<'_>],
        layer: usize,
        (q, k, v): (&Tensor, &Tensor, &Tensor),
        heads: Heads,
    ) -> candle_core::Result<Tensor> {
        if let [seq] = seqs {
            return seq.caches[layer].attend(q, k, v, seq.pos, heads);
        }
        let mut outputs = Vec::with_capacity(seqs.len());
        for (seq, &(start, len)) in seqs.iter_mut().zip(&self.spans) {
            let rows = |t: &Tensor| t.narrow(1, start, len);
            outputs.push(seq.caches[layer].attend(
                &rows(q)?,
                &rows(k)?,
                &rows(v)?,
                seq.pos,
                heads,
            )?);
        }
        Tensor::cat(&outputs, 1)
    }

    /// The logits of each sequence that wants them: its last row of `hidden` (`(1, rows,
    /// width)`) through `head`, which maps `(m, width)` rows to `(m, vocab)` row by row.
    pub fn logits(
        &self,
        hidden: &Tensor,
        head: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
    ) -> candle_core::Result<Vec<Option<Tensor>>> {
        let last: Vec<u32> = self
            .spans
            .iter()
            .zip(&self.wanted)
            .filter(|(_, &wanted)| wanted)
            .map(|(&(start, len), _)| (start + len - 1) as u32)
            .collect();
        if last.is_empty() {
            return Ok(vec![None; self.spans.len()]);
        }
        let index = Tensor::new(last.as_slice(), hidden.device())?;
        let rows = hidden.squeeze(0)?.index_select(&index, 0)?.contiguous()?;
        let logits = head(&rows)?;
        let mut next = 0;
        self.wanted
            .iter()
            .map(|&wanted| match wanted {
                true => {
                    next += 1;
                    logits.get(next - 1).map(Some)
                }
                false => Ok(None),
            })
            .collect()
    }
}

/// One layer's place in a step: the step's rows, the sequences (with their caches) and which
/// layer this is.
pub struct LayerStep<'r, 's> {
    pub rows: &'r StepRows,
    pub seqs: &'r mut [SeqRows<'s>],
    pub index: usize,
}

impl LayerStep<'_, '_> {
    /// [`StepRows::attend`] for this layer.
    pub fn attend(
        self,
        qkv: (&Tensor, &Tensor, &Tensor),
        heads: Heads,
    ) -> candle_core::Result<Tensor> {
        self.rows.attend(self.seqs, self.index, qkv, heads)
    }
}
