import Glibc
import URing

/// One operation a worker part asks the reactor for. Parts describe what they
/// want; the reactor turns it into an SQE now, or keeps it in its backlog
/// when the submission queue is full (see `SubmissionBacklog`).
///
/// Every pointer here must stay valid until the operation completes (the
/// msghdr and buffers of a send, the outbox bytes of a stream send, the
/// address of a connect), or at least until it is submitted (the shared
/// multishot receive header): the owner's tables keep them, not the stack.
enum Submission {
    /// A RECVMSG drawing a buffer from `group`: multishot when `singleShotHeader`
    /// is negative, else single-shot with the header at that index (the 5.19 path).
    case receiveMessage(socket: Int32, group: UInt16, singleShotHeader: Int32, userData: UserData)
    /// A RECV on a connected stream socket drawing a small buffer; multishot or one buffer.
    case streamReceive(socket: Int32, multishot: Bool, userData: UserData)
    /// A SENDMSG of a batcher operation's msghdr.
    case sendMessage(socket: Int32, message: UnsafePointer<msghdr>, userData: UserData)
    /// A SEND of `count` bytes from a connection's outbox.
    case streamSend(socket: Int32, bytes: UnsafeRawPointer, count: Int, userData: UserData)
    /// A multishot ACCEPT on a listening stream socket.
    case acceptMultishot(socket: Int32, userData: UserData)
    /// A CONNECT of a stream socket to `address`.
    case connect(socket: Int32, address: UnsafePointer<sockaddr>, length: socklen_t, userData: UserData)
    /// Cancels the operation tagged `target` (its completion says -ECANCELED).
    case cancel(target: UserData)
}

/// Operations the submission queue could not take, oldest first, drained
/// into the SQ at the next flush before anything newer (TigerBeetle's
/// io/linux.zig keeps an "unqueued" list the same way). Nothing is dropped
/// or retried in a loop because the ring was momentarily full.
///
/// Storage is a ring of `Submission` values reserved at start for the most
/// operations a worker can have waiting at once (its SQ plus its send
/// operations and sockets); only a backlog larger than that grows it, which
/// is the control path of an overloaded worker, never the steady state.
struct SubmissionBacklog: ~Copyable {
    private var storage: UnsafeMutablePointer<Submission>
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int) {
        self.capacity = max(16, capacity)
        storage = .allocate(capacity: self.capacity)
    }

    deinit {
        // Submission is a trivial type: nothing to deinitialize.
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    mutating func append(_ s: Submission) {
        if count == capacity { grow() }
        (storage + (head + count) % capacity).initialize(to: s)
        count += 1
    }

    /// The oldest operation, without removing it.
    var first: Submission? { count == 0 ? nil : storage[head] }

    mutating func removeFirst() {
        head = (head + 1) % capacity
        count -= 1
        if count == 0 { head = 0 }
    }

    private mutating func grow() {
        let bigger = UnsafeMutablePointer<Submission>.allocate(capacity: capacity * 2)
        for i in 0..<count { (bigger + i).initialize(to: storage[(head + i) % capacity]) }
        storage.deallocate()
        storage = bigger
        capacity *= 2
        head = 0
    }
}
