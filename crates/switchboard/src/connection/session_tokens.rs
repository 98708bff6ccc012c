//! The session's `refresh` command: a newer token replaces the connection's token, its
//! permissions and its expiry.
//!
//! The new token must verify with the configured key and name the same user (`sub`) as the
//! connection; otherwise the refresh is refused with `UNAUTHORIZED` and the old token stays in
//! force. On success the new grants apply to every later action, and the connection leaves
//! what they no longer allow at once: each room it may no longer join (its client gets
//! `room_left`, the room's other members `user_left`, as for `leave_room`) and each channel or
//! pattern it may no longer subscribe to (`unsubscribed`). The reply is the usual `ack` of a
//! frame that carried an `id`, after those notices. The hub's token sweep reads the new expiry
//! from the handle.

use super::{Done, Session};
use crate::connection::refused::Refused;
use crate::hub::Counters;

impl Session {
    pub(super) fn refresh(&mut self, token: &str) -> Result<Done, Refused> {
        let endpoint = self.endpoint.clone();
        let Some(jwt) = &endpoint.jwt else {
            // Permissions without a key: they came from the backend's connect proxy.
            return Err(if self.grants().is_some() {
                Refused::DecidedByBackend
            } else {
                Refused::AuthenticationOff
            });
        };
        let max_name = self.hub().config().limits.max_name_length;
        let identity = jwt.verify(token, max_name).map_err(|error| {
            Counters::add(&self.hub().counters().auth_failures, 1);
            Refused::InvalidToken(error)
        })?;
        if &identity.user != self.handle.user() {
            Counters::add(&self.hub().counters().auth_failures, 1);
            return Err(Refused::OtherUser);
        }
        self.handle
            .set_token_deadline(endpoint.token_deadline(identity.expires_at));
        // The fields, not `self.rare()`: the grants are read while the rooms are.
        let grants = self
            .rare
            .get_or_insert_default()
            .grants
            .insert(identity.grants);
        let rooms: Vec<_> = self
            .rooms
            .iter()
            .filter(|room| !grants.may_join(room))
            .cloned()
            .collect();
        let channels: Vec<_> = self
            .channels
            .iter()
            .filter(|channel| !grants.may_subscribe(channel))
            .cloned()
            .collect();
        tracing::debug!(
            conn = %self.handle.id(),
            user = %self.handle.user(),
            rooms_left = rooms.len(),
            channels_left = channels.len(),
            "token refreshed"
        );
        for room in rooms {
            // A member of each, just checked: leaving cannot be refused.
            let _ = self.leave(&room, None);
        }
        for channel in channels {
            self.unsubscribe(channel, None);
        }
        Ok(Done::Ack(None))
    }
}
