use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sustenet_proto::instance::TemplateOffer;

fn agent(name: &str, capacity: u32, templates: &[(&str, u32)]) -> AgentRegister {
    AgentRegister {
        name: name.into(),
        capacity,
        port_first: 7000,
        port_last: 7099,
        templates: templates
            .iter()
            .map(|(n, max)| TemplateOffer {
                name: (*n).into(),
                max: *max,
            })
            .collect(),
    }
}

fn admin(request_id: u64) -> Requester {
    Requester::Admin {
        conn: 1,
        request_id,
    }
}

fn request(template: &str, request_id: u64) -> SpawnRequest {
    SpawnRequest {
        template: template.into(),
        params: vec![("scene".into(), "crypt".into())],
        stop_when_empty_ms: 0,
        requester: admin(request_id),
    }
}

fn events(t: &mut InstanceTable) -> Vec<InstanceEvent> {
    std::iter::from_fn(|| t.poll_event()).collect()
}

fn table() -> (InstanceTable, StdRng) {
    (
        InstanceTable::new(InstanceSettings {
            register_timeout_ms: 1_000,
            stop_timeout_ms: 500,
            ..InstanceSettings::default()
        }),
        StdRng::seed_from_u64(5),
    )
}

#[test]
fn spawn_asks_the_agent_and_registration_makes_it_ready() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 10, &[("dungeon", 5)]), 1)
        .unwrap();
    let (id, on) = t.spawn(0, request("dungeon", 7), &mut rng).unwrap();
    assert_eq!(on, "a");
    let ev = events(&mut t);
    let [
        InstanceEvent::Spawn {
            agent,
            order:
                SpawnOrder {
                    instance_id,
                    key_name,
                    key,
                    params,
                    ..
                },
        },
    ] = ev.as_slice()
    else {
        panic!("{ev:?}")
    };
    assert_eq!((agent.as_str(), *instance_id), ("a", id));
    assert_eq!(params, &vec![("scene".to_owned(), "crypt".to_owned())]);
    // The key the agent gets is the one the master accepts for that name only.
    assert_eq!(t.cluster_key(key_name).as_ref(), Some(key));
    assert_eq!(t.cluster_key("instance-999"), None);
    assert_eq!(t.cluster_key("cluster-1"), None);
    assert_eq!(t.list(10)[0].state, InstanceState::Starting);
    assert_eq!(t.cluster_registered(10, key_name, 42), Some(id));
    let ev = events(&mut t);
    assert!(
        matches!(ev.as_slice(), [InstanceEvent::Ready { requester, instance_id, cluster_id: 42 }]
            if *requester == admin(7) && *instance_id == id),
        "{ev:?}"
    );
    assert_eq!(t.list(10)[0].state, InstanceState::Ready);
    // A re-registration (dropped link) is accepted but not announced twice.
    assert_eq!(t.cluster_registered(20, key_name, 42), Some(id));
    assert!(events(&mut t).is_empty());
}

#[test]
fn placement_picks_the_least_loaded_agent_with_the_template() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 10, &[("dungeon", 5)]), 1)
        .unwrap();
    t.agent_registered(&agent("b", 10, &[("dungeon", 5), ("arena", 1)]), 2)
        .unwrap();
    t.agent_registered(&agent("c", 10, &[("arena", 1)]), 3)
        .unwrap();
    let on: Vec<String> = (0..4)
        .map(|i| t.spawn(0, request("dungeon", i), &mut rng).unwrap().1)
        .collect();
    assert_eq!(on, ["a", "b", "a", "b"]);
    // Reported load breaks ties in instance counts.
    t.agent_load("a", 1, 9);
    assert_eq!(t.place("dungeon").unwrap(), "b");
    // Arena: b has 2 instances, c none.
    assert_eq!(t.spawn(0, request("arena", 9), &mut rng).unwrap().1, "c");
    let err = t.spawn(0, request("raid", 10), &mut rng).unwrap_err();
    assert_eq!(err.reason, DisconnectReason::NoCluster);
    assert!(err.message.contains("raid"), "{}", err.message);
}

#[test]
fn per_agent_per_template_and_master_limits() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 2), ("arena", 5)]), 1)
        .unwrap();
    t.spawn(0, request("dungeon", 1), &mut rng).unwrap();
    t.spawn(0, request("dungeon", 2), &mut rng).unwrap();
    // The template's max on this agent.
    let err = t.spawn(0, request("dungeon", 3), &mut rng).unwrap_err();
    assert_eq!(err.reason, DisconnectReason::ServerFull);
    t.spawn(0, request("arena", 4), &mut rng).unwrap();
    // The agent's capacity.
    assert!(t.spawn(0, request("arena", 5), &mut rng).is_err());
    assert_eq!(t.len(), 3);

    let mut limited = InstanceTable::new(InstanceSettings {
        template_limits: HashMap::from([("arena".to_owned(), 1)]),
        max_instances: 2,
        ..InstanceSettings::default()
    });
    limited
        .agent_registered(&agent("a", 10, &[("arena", 10), ("dungeon", 10)]), 1)
        .unwrap();
    limited.spawn(0, request("arena", 1), &mut rng).unwrap();
    let err = limited.spawn(0, request("arena", 2), &mut rng).unwrap_err();
    assert!(err.message.contains("its limit"), "{}", err.message);
    limited.spawn(0, request("dungeon", 3), &mut rng).unwrap();
    let err = limited
        .spawn(0, request("dungeon", 4), &mut rng)
        .unwrap_err();
    assert!(err.message.contains("master's limit"), "{}", err.message);
}

#[test]
fn bad_parameters_are_refused_before_placement() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 2)]), 1)
        .unwrap();
    let mut req = request("dungeon", 1);
    req.params = vec![("scene;rm".into(), "x".into())];
    assert_eq!(
        t.spawn(0, req, &mut rng).unwrap_err().reason,
        DisconnectReason::ProtocolViolation
    );
    assert!(t.is_empty());
    assert!(events(&mut t).is_empty());
}

#[test]
fn an_instance_that_never_registers_is_stopped_and_reported() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 2)]), 1)
        .unwrap();
    let (id, _) = t.spawn(0, request("dungeon", 1), &mut rng).unwrap();
    events(&mut t);
    t.tick(999);
    assert!(events(&mut t).is_empty());
    t.tick(1_000);
    let ev = events(&mut t);
    assert!(
        matches!(&ev[..], [InstanceEvent::Failed { reason, .. }, InstanceEvent::Stop { instance_id, .. }]
            if reason.reason == DisconnectReason::Timeout && *instance_id == id),
        "{ev:?}"
    );
    // Its key no longer registers, and it is forgotten once the agent reports the exit.
    assert_eq!(t.cluster_key(&instance_key_name(id)), None);
    let exit = Exit {
        instance_id: id,
        code: -1,
        restarting: false,
        stderr_tail: String::new(),
    };
    assert!(t.exited(1_100, "a", 1, &exit));
    assert!(t.is_empty());
    assert!(events(&mut t).is_empty());
}

#[test]
fn a_draining_instance_without_an_exit_report_is_forgotten() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 2)]), 1)
        .unwrap();
    let (id, _) = t.spawn(0, request("dungeon", 1), &mut rng).unwrap();
    t.cluster_registered(5, &instance_key_name(id), 77);
    events(&mut t);
    t.stop(10, id, "operator").unwrap();
    assert!(matches!(&events(&mut t)[..], [InstanceEvent::Stop { .. }]));
    t.tick(509);
    assert_eq!(t.len(), 1);
    t.tick(510);
    assert!(t.is_empty());
    assert!(matches!(
        &events(&mut t)[..],
        [InstanceEvent::CloseCluster { cluster_id: 77, .. }]
    ));
    assert!(t.stop(600, id, "again").is_err());
}

#[test]
fn a_crash_is_reported_or_restarted_as_the_agent_says() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 3)]), 1)
        .unwrap();
    let (id, _) = t.spawn(0, request("dungeon", 1), &mut rng).unwrap();
    events(&mut t);
    // Crashed before registering, not restarted: the requester hears the code and stderr.
    let exit = Exit {
        instance_id: id,
        code: 3,
        restarting: false,
        stderr_tail: "loading\nerror: no such scene\n".into(),
    };
    assert!(t.exited(10, "a", 1, &exit));
    let ev = events(&mut t);
    let [InstanceEvent::Failed { reason, .. }] = &ev[..] else {
        panic!("{ev:?}")
    };
    assert!(
        reason.message.contains("code 3") && reason.message.contains("no such scene"),
        "{}",
        reason.message
    );

    // A ready instance that crashes and is restarted starts again with a new deadline.
    let (id, _) = t.spawn(0, request("dungeon", 2), &mut rng).unwrap();
    t.cluster_registered(5, &instance_key_name(id), 9);
    events(&mut t);
    let exit = Exit {
        instance_id: id,
        code: -1,
        restarting: true,
        stderr_tail: String::new(),
    };
    assert!(t.exited(100, "a", 1, &exit));
    assert_eq!(t.list(10)[0].state, InstanceState::Starting);
    assert!(matches!(
        &events(&mut t)[..],
        [InstanceEvent::CloseCluster { cluster_id: 9, .. }]
    ));
    t.tick(1_099);
    assert!(events(&mut t).is_empty());
    assert_eq!(
        t.cluster_registered(1_050, &instance_key_name(id), 9),
        Some(id)
    );
    // Another agent (or another link of the same name) cannot report on it.
    assert!(!t.exited(1_100, "a", 2, &exit));
    assert!(!t.exited(1_100, "b", 1, &exit));
}

#[test]
fn an_agent_that_disappears_takes_its_instances_with_it() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 3)]), 1)
        .unwrap();
    t.agent_registered(&agent("b", 3, &[("dungeon", 3)]), 2)
        .unwrap();
    let (ready, on) = t.spawn(0, request("dungeon", 1), &mut rng).unwrap();
    assert_eq!(on, "a");
    let (_, on_b) = t.spawn(0, request("dungeon", 2), &mut rng).unwrap();
    assert_eq!(on_b, "b");
    let (starting, on) = t.spawn(0, request("dungeon", 3), &mut rng).unwrap();
    assert_eq!(on, "a");
    t.cluster_registered(5, &instance_key_name(ready), 50);
    events(&mut t);
    // A stale link of the same name changes nothing.
    assert!(t.agent_lost("a", 99).is_empty());
    let gone = t.agent_lost("a", 1);
    assert_eq!(gone, vec![ready, starting]);
    let ev = events(&mut t);
    assert!(
        ev.iter().any(
            |e| matches!(e, InstanceEvent::CloseCluster { cluster_id: 50, reason }
            if reason.message.contains("agent 'a'"))
        ),
        "{ev:?}"
    );
    assert!(
        ev.iter().any(
            |e| matches!(e, InstanceEvent::Failed { requester, .. } if *requester == admin(3))
        ),
        "{ev:?}"
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t.cluster_key(&instance_key_name(ready)), None);
    // New spawns go to the agent that is left; the name is free again.
    assert_eq!(t.place("dungeon").unwrap(), "b");
    t.agent_registered(&agent("a", 3, &[("dungeon", 3)]), 3)
        .unwrap();
}

#[test]
fn stop_when_empty_counts_from_the_last_player() {
    let (mut t, mut rng) = table();
    t.agent_registered(&agent("a", 3, &[("dungeon", 3)]), 1)
        .unwrap();
    let mut req = request("dungeon", 1);
    req.stop_when_empty_ms = 300;
    let (id, _) = t.spawn(0, req, &mut rng).unwrap();
    t.cluster_registered(100, &instance_key_name(id), 5);
    events(&mut t);
    assert_eq!(t.ready_clusters(), vec![5]);
    t.players(200, 5, 2);
    t.tick(1_000);
    assert!(events(&mut t).is_empty());
    t.players(1_000, 5, 0);
    t.tick(1_299);
    assert!(events(&mut t).is_empty());
    t.tick(1_300);
    assert!(
        matches!(&events(&mut t)[..], [InstanceEvent::Stop { instance_id, .. }] if *instance_id == id)
    );
    assert_eq!(t.list(10)[0].state, InstanceState::Draining);
}

#[test]
fn agent_registrations_are_checked() {
    let (mut t, _) = table();
    let mut reg = agent("a", 3, &[("dungeon", 3)]);
    reg.port_first = 8000;
    reg.port_last = 7000;
    assert!(t.agent_registered(&reg, 1).is_err());
    let reg = agent("a", 3, &[("dungeon", 3), ("dungeon", 1)]);
    assert!(t.agent_registered(&reg, 1).is_err());
    t.agent_registered(&agent("a", 3, &[]), 1).unwrap();
    let err = t.agent_registered(&agent("a", 3, &[]), 2).unwrap_err();
    assert!(err.message.contains("connected"), "{}", err.message);
    let mut few = InstanceTable::new(InstanceSettings {
        max_agents: 1,
        ..InstanceSettings::default()
    });
    few.agent_registered(&agent("a", 3, &[]), 1).unwrap();
    assert_eq!(
        few.agent_registered(&agent("b", 3, &[]), 2)
            .unwrap_err()
            .reason,
        DisconnectReason::ServerFull
    );
}

#[test]
fn instance_key_names_parse_strictly() {
    assert_eq!(instance_id("instance-12"), Some(12));
    assert_eq!(instance_key_name(12), "instance-12");
    for bad in [
        "instance-",
        "instance-012",
        "instance-1x",
        "instance--1",
        "inst-1",
        "instance-99999999999999999999",
    ] {
        assert_eq!(instance_id(bad), None, "{bad}");
    }
}
