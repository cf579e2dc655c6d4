//! Instances this cluster's game asked the master for and not answered yet
//! (`Context::spawn_instance`, answered through `Plugin::on_instance`).

use std::collections::HashSet;

use sustenet_proto::instance::{Params, TEMPLATE_NAME_MAX, check_params};
use sustenet_proto::{DisconnectReason, Goodbye};

use super::Context;
use super::output::LinkEvent;

/// Most instance requests waiting for an answer at once.
pub const INSTANCE_REQUESTS_MAX: usize = 256;

/// Why an instance cannot be asked for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot ask for an instance: {0}")]
pub struct InstanceRequestError(pub String);

/// The answer to an instance request: the instance's cluster id (a target
/// for [`Context::transfer`]), or why there is none.
pub type InstanceAnswer = Result<u64, Goodbye>;

/// Requests sent to the master and not answered yet.
#[derive(Debug, Default)]
pub(crate) struct InstanceRequests {
    next_id: u64,
    pending: HashSet<u64>,
    /// Registered with the master now (requests are refused otherwise).
    pub(crate) master_up: bool,
}

impl InstanceRequests {
    /// The answer to `request_id` arrived; whether it was waited for.
    pub(crate) fn answered(&mut self, request_id: u64) -> bool {
        self.pending.remove(&request_id)
    }

    /// The master link was lost: every waiting request fails (its answer, if
    /// any, is lost with the link).
    pub(crate) fn lost(&mut self) -> Vec<u64> {
        self.master_up = false;
        let mut ids: Vec<u64> = self.pending.drain().collect();
        ids.sort_unstable();
        ids
    }
}

/// The goodbye a request waiting when the master link dropped gets.
pub(crate) fn link_lost() -> Goodbye {
    Goodbye {
        reason: DisconnectReason::ConnectionLost,
        message: "the link to the master was lost before the answer".into(),
    }
}

impl Context<'_> {
    /// Asks the master for a new instance of `template` (a cluster an agent
    /// starts, docs/instances.md) with values for its placeholders; the
    /// master stops it once it has been empty for `stop_when_empty_sec`
    /// seconds (0: never). Returns the request id;
    /// [`Plugin::on_instance`](crate::plugin::Plugin::on_instance) gets the
    /// answer with the same id: the instance's cluster id once it is ready
    /// (move players there with [`Context::transfer`]), or why it failed.
    /// Refused at once while the cluster is not registered with the master,
    /// with [`INSTANCE_REQUESTS_MAX`] requests waiting, or for a bad template
    /// name or parameters.
    pub fn spawn_instance(
        &mut self,
        template: &str,
        params: &[(String, String)],
        stop_when_empty_sec: u32,
    ) -> Result<u64, InstanceRequestError> {
        let refuse = |why: String| Err(InstanceRequestError(why));
        let r = &mut self.s.instances;
        if !r.master_up {
            return refuse("the cluster is not registered with the master".into());
        }
        if r.pending.len() >= INSTANCE_REQUESTS_MAX {
            return refuse(format!(
                "{INSTANCE_REQUESTS_MAX} requests are waiting for an answer"
            ));
        }
        if template.is_empty() || template.len() > TEMPLATE_NAME_MAX {
            return refuse(format!("a template name is 1 to {TEMPLATE_NAME_MAX} bytes"));
        }
        let params: Params = params.to_vec();
        if let Err(why) = check_params(&params) {
            return refuse(why);
        }
        r.next_id += 1;
        let request_id = r.next_id;
        let ev = LinkEvent::SpawnInstance {
            request_id,
            template: template.to_owned(),
            params,
            stop_when_empty_sec,
        };
        if self.s.outputs.link(&self.s.transfers.link, ev).is_err() {
            return refuse("the link to the master is not keeping up".into());
        }
        self.s.instances.pending.insert(request_id);
        Ok(request_id)
    }
}

#[cfg(test)]
mod tests {
    use sustenet_proto::Goodbye;

    use super::super::harness::{Harness, Seen};
    use super::*;
    use crate::cluster::{ClusterConfig, MasterLinkStatus};

    fn spawn(h: &mut Harness, template: &'static str) -> Result<u64, InstanceRequestError> {
        let out = std::sync::Arc::new(std::sync::Mutex::new(None));
        let o = out.clone();
        h.command(move |ctx| {
            let r = ctx.spawn_instance(template, &[("scene".into(), "crypt".into())], 30);
            *o.lock().unwrap() = Some(r);
        });
        let taken = out.lock().unwrap().take();
        taken.unwrap()
    }

    fn registered(h: &mut Harness) {
        let now = h.now;
        h.core
            .handle_master(now, &MasterLinkStatus::Registered { cluster_id: 1 });
        h.pump();
    }

    #[test]
    fn a_request_goes_to_the_master_and_its_answer_to_the_plugin_once() {
        let mut h = Harness::new(ClusterConfig::default());
        // Not registered yet: refused at once.
        assert!(spawn(&mut h, "dungeon").is_err());
        registered(&mut h);
        let id = spawn(&mut h, "dungeon").unwrap();
        let sent = h.link.drain(..).any(|e| {
            matches!(e, LinkEvent::SpawnInstance { request_id, ref template, ref params, stop_when_empty_sec: 30 }
                if request_id == id && template == "dungeon" && params.len() == 1)
        });
        assert!(sent);
        h.seen();
        let now = h.now;
        h.core.handle_instance_answer(now, id, &Ok(77));
        h.core.handle_instance_answer(now, id, &Ok(78));
        h.core.handle_instance_answer(now, 999, &Ok(79));
        assert_eq!(h.seen(), vec![Seen::Instance(id, Ok(77))]);
    }

    #[test]
    fn bad_requests_are_refused_at_once() {
        let mut h = Harness::new(ClusterConfig::default());
        registered(&mut h);
        assert!(spawn(&mut h, "").is_err());
        let out = std::sync::Arc::new(std::sync::Mutex::new(None));
        let o = out.clone();
        h.command(move |ctx| {
            *o.lock().unwrap() = Some(ctx.spawn_instance("d", &[("a b".into(), "x".into())], 0));
        });
        assert!(out.lock().unwrap().take().unwrap().is_err());
        assert!(
            h.link
                .drain(..)
                .all(|e| !matches!(e, LinkEvent::SpawnInstance { .. }))
        );
    }

    #[test]
    fn waiting_requests_fail_when_the_master_link_drops() {
        let mut h = Harness::new(ClusterConfig::default());
        registered(&mut h);
        let a = spawn(&mut h, "dungeon").unwrap();
        let b = spawn(&mut h, "arena").unwrap();
        h.seen();
        let now = h.now;
        h.core.handle_master(
            now,
            &MasterLinkStatus::Lost {
                message: "gone".into(),
            },
        );
        let seen = h.seen();
        assert!(seen.contains(&Seen::Instance(a, Err(DisconnectReason::ConnectionLost))));
        assert!(seen.contains(&Seen::Instance(b, Err(DisconnectReason::ConnectionLost))));
        // A late answer is ignored; new requests wait for the next registration.
        h.core
            .handle_instance_answer(now, a, &Err(Goodbye::new(DisconnectReason::Timeout)));
        assert!(h.seen().is_empty());
        assert!(spawn(&mut h, "dungeon").is_err());
    }
}
