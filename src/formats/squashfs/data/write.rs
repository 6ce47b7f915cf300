//! The writer thread: puts compressed blocks in sequence order and writes them.

use super::*;

/// The writer thread: puts items in sequence order and writes them.
pub(super) struct Writer {
    pub(super) file: File,
    pub(super) disk_pos: u64,
    pub(super) buffered: Vec<u8>,
    pub(super) current: Option<(u32, BlockList)>,
    pub(super) shared: Arc<Shared>,
    pub(super) tokens: Sender<()>,
    pub(super) pool: Sender<Vec<u8>>,
}

impl Writer {
    pub(super) fn run(&mut self, items: Receiver<(u64, Payload)>) -> Result<u64, Error> {
        let mut next = 0u64;
        let mut waiting: BTreeMap<u64, Payload> = BTreeMap::new();
        for (seq, payload) in items {
            waiting.insert(seq, payload);
            while let Some(payload) = waiting.remove(&next) {
                self.handle(next, payload)?;
                next += 1;
            }
        }
        self.flush(next.checked_sub(1))?;
        Ok(self.pos())
    }

    pub(super) fn pos(&self) -> u64 {
        self.disk_pos + self.buffered.len() as u64
    }

    pub(super) fn handle(&mut self, seq: u64, payload: Payload) -> Result<(), Error> {
        match payload {
            Payload::Block { data, size_word } => {
                let (_, list) = self
                    .current
                    .as_mut()
                    .expect("blocks come between FileStart and FileEnd");
                list.sizes.push(size_word);
                self.buffered.extend_from_slice(&data);
                self.recycle(data);
            }
            Payload::Fragment {
                index,
                data,
                size_word,
            } => {
                let entry = FragmentEntry {
                    start: self.pos(),
                    size_word,
                };
                self.buffered.extend_from_slice(&data);
                self.recycle(data);
                let mut state = self.shared.lock();
                let slot = index as usize;
                if state.fragments.len() <= slot {
                    state.fragments.resize(slot + 1, None);
                }
                state.fragments[slot] = Some(entry);
            }
            Payload::FileStart(id) => {
                self.current = Some((
                    id,
                    BlockList {
                        start: self.pos(),
                        sizes: Vec::new(),
                    },
                ))
            }
            Payload::SparseBlock => {
                let (_, list) = self
                    .current
                    .as_mut()
                    .expect("blocks come between FileStart and FileEnd");
                list.sizes.push(0);
            }
            Payload::FileEnd(id) => {
                let (started, list) = self.current.take().expect("FileEnd follows FileStart");
                debug_assert_eq!(started, id);
                let mut state = self.shared.lock();
                let slot = id as usize;
                if state.blocks.len() <= slot {
                    state.blocks.resize(slot + 1, None);
                }
                state.blocks[slot] = Some(list);
            }
            Payload::Discard(id) => {
                // Nothing was written after the discarded file: drop it whole.
                let start = self.shared.lock().blocks[id as usize]
                    .take()
                    .expect("discarded file was written")
                    .start;
                self.flush(Some(seq))?;
                self.file
                    .seek(SeekFrom::Start(start))
                    .map_err(Error::Writing)?;
                self.disk_pos = start;
            }
            Payload::Sync => self.flush(Some(seq))?,
            Payload::Failed(e) => return Err(e),
        }
        if self.buffered.len() >= WRITE_BUFFER {
            self.flush(Some(seq))?;
        }
        Ok(())
    }

    fn recycle(&self, buf: Vec<u8>) {
        let _ = self.pool.send(buf);
        let _ = self.tokens.send(());
    }

    pub(super) fn flush(&mut self, seq: Option<u64>) -> Result<(), Error> {
        if !self.buffered.is_empty() {
            self.file
                .write_all(&self.buffered)
                .map_err(Error::Writing)?;
            self.disk_pos += self.buffered.len() as u64;
            self.buffered.clear();
        }
        if let Some(seq) = seq {
            self.shared.lock().flushed_seq = Some(seq);
            self.shared.cond.notify_all();
        }
        Ok(())
    }
}
