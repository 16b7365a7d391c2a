#[test_only]
module robot_ledger::ledger_tests {
    use iota::clock;
    use iota::test_scenario::{Self as ts, Scenario};
    use robot_ledger::ledger::{Self, AdminCap, Registry};

    const ADMIN: address = @0xAD;
    const STRANGER: address = @0x5A;

    /// The robot's key, and the address registration derives from it.
    fun robot_key(): vector<u8> { bytes(32, 7) }

    fun robot(): address { ledger::address_of_key(&robot_key()) }

    fun bytes(len: u64, fill: u8): vector<u8> {
        let mut out = vector[];
        let mut i = 0;
        while (i < len) {
            out.push_back(fill);
            i = i + 1;
        };
        out
    }

    /// Publishes the package as ADMIN and registers the robot; the next tx is ADMIN's.
    fun setup(): Scenario {
        let mut scenario = ts::begin(ADMIN);
        ledger::init_for_testing(scenario.ctx());
        scenario.next_tx(ADMIN);
        let cap = scenario.take_from_sender<AdminCap>();
        let mut registry = scenario.take_shared<Registry>();
        ledger::register_robot(&cap, &mut registry, robot_key());
        ts::return_shared(registry);
        scenario.return_to_sender(cap);
        scenario.next_tx(ADMIN);
        scenario
    }

    /// Runs `anchor` as `sender` with the given root and range.
    fun anchor_as(
        scenario: &mut Scenario,
        sender: address,
        root: vector<u8>,
        count: u64,
        first: u64,
        last: u64,
    ) {
        scenario.next_tx(sender);
        let mut registry = scenario.take_shared<Registry>();
        let mut clk = clock::create_for_testing(scenario.ctx());
        clk.set_for_testing(1_000);
        ledger::anchor(&mut registry, root, count, first, last, &clk, scenario.ctx());
        clk.destroy_for_testing();
        ts::return_shared(registry);
    }

    /// Runs `commit_result` as `sender`.
    fun commit_as(
        scenario: &mut Scenario,
        sender: address,
        task: vector<u8>,
        digest: vector<u8>,
        root: vector<u8>,
    ) {
        scenario.next_tx(sender);
        let registry = scenario.take_shared<Registry>();
        ledger::commit_result(&registry, task, digest, root, scenario.ctx());
        ts::return_shared(registry);
    }

    #[test]
    fun init_gives_admin_the_cap_and_shares_the_registry() {
        let mut scenario = ts::begin(ADMIN);
        ledger::init_for_testing(scenario.ctx());
        let effects = scenario.next_tx(ADMIN);
        assert!(effects.shared().length() == 1, 0);
        assert!(scenario.has_most_recent_for_sender<AdminCap>(), 1);

        let registry = scenario.take_shared<Registry>();
        assert!(registry.anchor_count() == 0, 2);
        assert!(registry.latest_root() == vector[], 3);
        assert!(!registry.is_registered(robot()), 4);
        ts::return_shared(registry);
        scenario.end();
    }

    #[test]
    fun register_then_anchor_updates_counters_and_emits() {
        let mut scenario = setup();
        {
            let registry = scenario.take_shared<Registry>();
            assert!(registry.is_registered(robot()), 0);
            assert!(registry.public_key(robot()) == bytes(32, 7), 1);
            ts::return_shared(registry);
        };

        anchor_as(&mut scenario, robot(), bytes(32, 1), 10, 1, 10);
        let effects = scenario.next_tx(robot());
        assert!(effects.num_user_events() == 1, 2);

        anchor_as(&mut scenario, robot(), bytes(32, 2), 5, 11, 15);
        let effects = scenario.next_tx(robot());
        assert!(effects.num_user_events() == 1, 3);

        let registry = scenario.take_shared<Registry>();
        assert!(registry.anchor_count() == 2, 4);
        assert!(registry.latest_root() == bytes(32, 2), 5);
        assert!(registry.latest_count() == 5, 6);
        ts::return_shared(registry);
        scenario.end();
    }

    #[test]
    fun the_address_is_the_one_the_key_signs_for() {
        // blake2b256(0x00 ‖ key), as the IOTA SDK derives it (test/unit/iota-address.test.ts).
        assert!(robot() == @0x17cdc7bca3f2a0bda60c6de5b96f82a36239b44bde397a3862d529ba8b3d7c62, 0);
        let mut scenario = setup();
        let registry = scenario.take_shared<Registry>();
        assert!(registry.public_key(robot()) == robot_key(), 1);
        ts::return_shared(registry);
        scenario.end();
    }

    #[test]
    fun register_emits_an_event() {
        let mut scenario = ts::begin(ADMIN);
        ledger::init_for_testing(scenario.ctx());
        scenario.next_tx(ADMIN);
        let cap = scenario.take_from_sender<AdminCap>();
        let mut registry = scenario.take_shared<Registry>();
        ledger::register_robot(&cap, &mut registry, robot_key());
        ts::return_shared(registry);
        scenario.return_to_sender(cap);
        let effects = scenario.next_tx(ADMIN);
        assert!(effects.num_user_events() == 1, 0);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::ENotRegistered)]
    fun anchor_by_unregistered_sender_aborts() {
        let mut scenario = setup();
        anchor_as(&mut scenario, STRANGER, bytes(32, 1), 1, 1, 1);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadHashLength)]
    fun anchor_with_short_root_aborts() {
        let mut scenario = setup();
        anchor_as(&mut scenario, robot(), bytes(31, 1), 1, 1, 1);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EEmptyAnchor)]
    fun anchor_of_zero_entries_aborts() {
        let mut scenario = setup();
        anchor_as(&mut scenario, robot(), bytes(32, 1), 0, 1, 1);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadLamportRange)]
    fun anchor_with_inverted_lamport_range_aborts() {
        let mut scenario = setup();
        anchor_as(&mut scenario, robot(), bytes(32, 1), 1, 9, 3);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadKeyLength)]
    fun register_with_short_key_aborts() {
        let mut scenario = ts::begin(ADMIN);
        ledger::init_for_testing(scenario.ctx());
        scenario.next_tx(ADMIN);
        let cap = scenario.take_from_sender<AdminCap>();
        let mut registry = scenario.take_shared<Registry>();
        ledger::register_robot(&cap, &mut registry, bytes(31, 7));
        ts::return_shared(registry);
        scenario.return_to_sender(cap);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EAlreadyRegistered)]
    fun register_twice_aborts() {
        let mut scenario = setup();
        let cap = scenario.take_from_sender<AdminCap>();
        let mut registry = scenario.take_shared<Registry>();
        ledger::register_robot(&cap, &mut registry, robot_key());
        ts::return_shared(registry);
        scenario.return_to_sender(cap);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::ENotRegistered)]
    fun revoke_then_anchor_aborts() {
        let mut scenario = setup();
        {
            let cap = scenario.take_from_sender<AdminCap>();
            let mut registry = scenario.take_shared<Registry>();
            ledger::revoke_robot(&cap, &mut registry, robot());
            assert!(!registry.is_registered(robot()), 0);
            ts::return_shared(registry);
            scenario.return_to_sender(cap);
        };
        anchor_as(&mut scenario, robot(), bytes(32, 1), 1, 1, 1);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::ENotRegistered)]
    fun revoke_unknown_robot_aborts() {
        let mut scenario = setup();
        let cap = scenario.take_from_sender<AdminCap>();
        let mut registry = scenario.take_shared<Registry>();
        ledger::revoke_robot(&cap, &mut registry, STRANGER);
        ts::return_shared(registry);
        scenario.return_to_sender(cap);
        scenario.end();
    }

    #[test]
    fun commit_result_by_registered_robot_emits() {
        let mut scenario = setup();
        commit_as(&mut scenario, robot(), b"task-1", bytes(32, 3), bytes(32, 4));
        commit_as(&mut scenario, robot(), bytes(80, 0x61), bytes(32, 3), bytes(32, 4));
        let effects = scenario.next_tx(robot());
        assert!(effects.num_user_events() == 1, 0);
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::ENotRegistered)]
    fun commit_result_by_unregistered_sender_aborts() {
        let mut scenario = setup();
        commit_as(&mut scenario, STRANGER, b"task-1", bytes(32, 3), bytes(32, 4));
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadHashLength)]
    fun commit_result_with_short_digest_aborts() {
        let mut scenario = setup();
        commit_as(&mut scenario, robot(), b"task-1", bytes(16, 3), bytes(32, 4));
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadHashLength)]
    fun commit_result_with_short_root_aborts() {
        let mut scenario = setup();
        commit_as(&mut scenario, robot(), b"task-1", bytes(32, 3), bytes(33, 4));
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadTaskLength)]
    fun commit_result_with_empty_task_aborts() {
        let mut scenario = setup();
        commit_as(&mut scenario, robot(), vector[], bytes(32, 3), bytes(32, 4));
        scenario.end();
    }

    #[test]
    #[expected_failure(abort_code = ledger::EBadTaskLength)]
    fun commit_result_with_overlong_task_aborts() {
        let mut scenario = setup();
        commit_as(&mut scenario, robot(), bytes(81, 0x61), bytes(32, 3), bytes(32, 4));
        scenario.end();
    }
}
