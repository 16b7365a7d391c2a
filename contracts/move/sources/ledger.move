/// On-chain anchor for the robomesh signed log.
///
/// An admin registers each robot by its raw 32-byte Ed25519 public key; the robot's
/// address is derived from that key, so the two cannot disagree. A registered robot periodically anchors the Merkle root of the log
/// entries it has seen (`anchor`) and commits digests of task results
/// (`commit_result`). Everything observable happens through events; the shared
/// `Registry` only keeps the robot set and the latest anchor.
module robot_ledger::ledger {
    use iota::address;
    use iota::clock::Clock;
    use iota::event;
    use iota::hash;
    use iota::table::{Self, Table};

    // === Errors ===

    /// The public key is not exactly 32 bytes.
    const EBadKeyLength: u64 = 1;
    /// The robot address is already in the registry.
    const EAlreadyRegistered: u64 = 2;
    /// The robot address (or the transaction sender) is not in the registry.
    const ENotRegistered: u64 = 3;
    /// A root or digest is not exactly 32 bytes.
    const EBadHashLength: u64 = 4;
    /// An anchor must cover at least one entry.
    const EEmptyAnchor: u64 = 5;
    /// `first_lamport` is greater than `last_lamport`.
    const EBadLamportRange: u64 = 6;
    /// The task id is empty or longer than `MAX_TASK_LEN` bytes.
    const EBadTaskLength: u64 = 7;

    // === Constants ===

    const KEY_LEN: u64 = 32;
    /// The signature scheme flag of Ed25519 in IOTA addresses.
    const ED25519_FLAG: u8 = 0;
    const HASH_LEN: u64 = 32;
    const MAX_TASK_LEN: u64 = 80;

    // === Objects ===

    /// Capability held by the fleet operator; gates registration and revocation.
    public struct AdminCap has key, store {
        id: UID,
    }

    /// Shared registry of robots and the latest anchored log root.
    public struct Registry has key {
        id: UID,
        /// Robot address -> raw 32-byte Ed25519 public key.
        robots: Table<address, vector<u8>>,
        /// Number of anchors accepted so far.
        anchors: u64,
        latest_root: vector<u8>,
        latest_count: u64,
    }

    // === Events ===

    public struct RobotRegistered has copy, drop {
        registry: ID,
        robot: address,
        public_key: vector<u8>,
    }

    public struct RobotRevoked has copy, drop {
        registry: ID,
        robot: address,
    }

    public struct Anchored has copy, drop {
        registry: ID,
        robot: address,
        root: vector<u8>,
        count: u64,
        first_lamport: u64,
        last_lamport: u64,
        sequence: u64,
        timestamp_ms: u64,
    }

    public struct ResultCommitted has copy, drop {
        registry: ID,
        robot: address,
        task: vector<u8>,
        digest: vector<u8>,
        root: vector<u8>,
    }

    /// `registry.has_robot(addr)` reads better at call sites than `is_registered`.
    public use fun is_registered as Registry.has_robot;

    // === Publish ===

    fun init(ctx: &mut TxContext) {
        transfer::transfer(AdminCap { id: object::new(ctx) }, ctx.sender());
        transfer::share_object(Registry {
            id: object::new(ctx),
            robots: table::new(ctx),
            anchors: 0,
            latest_root: vector[],
            latest_count: 0,
        });
    }

    // === Admin ===

    /// Registers the robot whose Ed25519 key is `public_key`, at the address that key signs for.
    public fun register_robot(_: &AdminCap, registry: &mut Registry, public_key: vector<u8>) {
        assert!(public_key.length() == KEY_LEN, EBadKeyLength);
        let robot = address_of_key(&public_key);
        assert!(!registry.has_robot(robot), EAlreadyRegistered);
        registry.robots.add(robot, public_key);
        event::emit(RobotRegistered { registry: object::id(registry), robot, public_key });
    }

    public fun revoke_robot(_: &AdminCap, registry: &mut Registry, robot: address) {
        assert!(registry.has_robot(robot), ENotRegistered);
        registry.robots.remove(robot);
        event::emit(RobotRevoked { registry: object::id(registry), robot });
    }

    // === Robots ===

    public fun anchor(
        registry: &mut Registry,
        root: vector<u8>,
        count: u64,
        first_lamport: u64,
        last_lamport: u64,
        clock: &Clock,
        ctx: &mut TxContext,
    ) {
        let robot = ctx.sender();
        assert!(registry.has_robot(robot), ENotRegistered);
        assert!(root.length() == HASH_LEN, EBadHashLength);
        assert!(count > 0, EEmptyAnchor);
        assert!(first_lamport <= last_lamport, EBadLamportRange);

        registry.anchors = registry.anchors + 1;
        registry.latest_root = root;
        registry.latest_count = count;

        event::emit(Anchored {
            registry: object::id(registry),
            robot,
            root,
            count,
            first_lamport,
            last_lamport,
            sequence: registry.anchors,
            timestamp_ms: clock.timestamp_ms(),
        });
    }

    public fun commit_result(
        registry: &Registry,
        task: vector<u8>,
        digest: vector<u8>,
        root: vector<u8>,
        ctx: &mut TxContext,
    ) {
        let robot = ctx.sender();
        assert!(registry.has_robot(robot), ENotRegistered);
        assert!(digest.length() == HASH_LEN, EBadHashLength);
        assert!(root.length() == HASH_LEN, EBadHashLength);
        let task_len = task.length();
        assert!(task_len > 0 && task_len <= MAX_TASK_LEN, EBadTaskLength);

        event::emit(ResultCommitted { registry: object::id(registry), robot, task, digest, root });
    }

    // === Reads ===

    /// The IOTA address of an Ed25519 key: blake2b256(flag 0x00 ‖ public key).
    public fun address_of_key(public_key: &vector<u8>): address {
        let mut bytes = vector[ED25519_FLAG];
        bytes.append(*public_key);
        address::from_bytes(hash::blake2b256(&bytes))
    }

    public fun is_registered(registry: &Registry, robot: address): bool {
        registry.robots.contains(robot)
    }

    public fun anchor_count(registry: &Registry): u64 {
        registry.anchors
    }

    public fun latest_root(registry: &Registry): vector<u8> {
        registry.latest_root
    }

    public fun latest_count(registry: &Registry): u64 {
        registry.latest_count
    }

    /// The registered Ed25519 key of `robot`; aborts with `ENotRegistered` if absent.
    public fun public_key(registry: &Registry, robot: address): vector<u8> {
        assert!(registry.has_robot(robot), ENotRegistered);
        *registry.robots.borrow(robot)
    }

    // === Tests ===

    #[test_only]
    public fun init_for_testing(ctx: &mut TxContext) {
        init(ctx)
    }
}
