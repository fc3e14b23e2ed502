//! Per-project broadcast channels on one node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;
use uuid::Uuid;

/// One broadcast channel per project that somebody on this node listens to. A channel is
/// created by its first subscriber and dropped once nobody listens, so memory follows use.
pub struct Topics<T> {
    capacity: usize,
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Arc<T>>>>,
}

impl<T> Topics<T> {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            channels: Mutex::new(HashMap::new()),
        }
    }

    pub fn subscribe(&self, project: Uuid) -> broadcast::Receiver<Arc<T>> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        // Channels nobody listens to any more go when something is sent to them, or here, on
        // every 256th new channel (so projects that fell silent do not pile up).
        if !channels.contains_key(&project) && channels.len() % 256 == 255 {
            channels.retain(|_, sender| sender.receiver_count() > 0);
        }
        channels
            .entry(project)
            .or_insert_with(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Deliver to this node's subscribers of `project`, if any.
    pub fn send(&self, project: Uuid, item: Arc<T>) {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = channels.get(&project)
            && sender.send(item).is_err()
        {
            channels.remove(&project);
        }
    }
}
