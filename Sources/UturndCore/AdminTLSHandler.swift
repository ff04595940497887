import NIOCore
import Relay

/// TLS for the admin listener (`--admin-cert`, `--admin-pkey`): the first
/// handler of each connection's pipeline, turning ciphertext from the socket
/// into plaintext for the HTTP handlers and their plaintext back into
/// ciphertext, through the same OpenSSL BIO pair the TURN listeners use
/// (`TLSStream`). The admin API's traffic is a few small requests, so
/// simplicity wins over copies here: bytes pass through a scratch array.
///
/// Lifetime: the `TLSStream` is made with the handler and freed when the
/// handler leaves the pipeline (the connection closed); everything runs on
/// the connection's event loop.
final class AdminTLSHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private var tls: TLSStream
    private var scratch = [UInt8](repeating: 0, count: TLSStream.defaultBufferSize)
    /// Plaintext written before the handshake finished, or that did not fit yet.
    private var pending: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var closed = false

    init(context: TLSServerContext) throws(TLSError) {
        tls = try TLSStream(server: context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if !tls.isFreed { tls.free() }
        for (_, promise) in pending { promise?.fail(ChannelError.ioOnClosedChannel) }
        pending.removeAll()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        while buffer.readableBytes > 0 && !closed {
            let n = buffer.withUnsafeReadableBytes { tls.feedCiphertext($0) }
            if n > 0 { buffer.moveReaderIndex(forwardBy: n) }
            pump(context)
            if n == 0 && tls.ciphertextRoom == 0 {
                // Neither side drains: a client sending far more than a request.
                fail(context)
                return
            }
        }
    }

    /// Decrypts what can be decrypted (handshake included), passes the
    /// plaintext on, encrypts waiting writes, and sends the ciphertext made.
    private func pump(_ context: ChannelHandlerContext) {
        guard !closed else { return }
        reading: while true {
            let result = scratch.withUnsafeMutableBytes { tls.readPlaintext(into: $0) }
            switch result {
            case .bytes(let n):
                if n == 0 { break reading }
                context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: scratch[0..<n])))
            case .wantMore:
                break reading
            case .wantWrite:
                // The BIO is full of ciphertext for the client: send it, then go on.
                guard tls.pendingCiphertext > 0 else {
                    fail(context)
                    return
                }
                sendCiphertext(context, promise: nil)
            case .closed:
                sendCiphertext(context, promise: nil)
                context.close(promise: nil)
                return
            case .failed:
                fail(context)
                return
            }
        }
        writePending(context)
        sendCiphertext(context, promise: nil)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        pending.append((unwrapOutboundIn(data), promise))
        writePending(context)
    }

    func flush(context: ChannelHandlerContext) {
        context.flush()
    }

    /// Encrypts the waiting plaintext in order; each write's promise goes
    /// with the last ciphertext it produced.
    private func writePending(_ context: ChannelHandlerContext) {
        guard tls.isHandshakeComplete else { return }
        while !pending.isEmpty {
            var (buffer, promise) = pending[0]
            while buffer.readableBytes > 0 {
                let n: Int
                do throws(TLSError) {
                    n = try buffer.withUnsafeReadableBytes { (raw) throws(TLSError) -> Int in
                        try tls.writePlaintext(raw)
                    }
                } catch {
                    fail(context)
                    return
                }
                if n > 0 {
                    buffer.moveReaderIndex(forwardBy: n)
                } else if tls.pendingCiphertext > 0 {
                    sendCiphertext(context, promise: nil)  // makes room in the BIO
                } else {
                    pending[0].0 = buffer
                    return
                }
            }
            pending.removeFirst()
            sendCiphertext(context, promise: promise)
        }
    }

    /// Moves the ciphertext the BIO holds to the socket; `promise` is
    /// completed with the last piece (at once when there is none).
    private func sendCiphertext(_ context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        var pieces: [ByteBuffer] = []
        while tls.pendingCiphertext > 0 {
            let n = scratch.withUnsafeMutableBytes { tls.takeCiphertext(into: $0) }
            if n == 0 { break }
            pieces.append(context.channel.allocator.buffer(bytes: scratch[0..<n]))
        }
        guard !pieces.isEmpty else {
            promise?.succeed(())
            return
        }
        for (i, piece) in pieces.enumerated() {
            context.write(wrapOutboundOut(piece), promise: i == pieces.count - 1 ? promise : nil)
        }
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if !closed && !tls.isFreed && tls.isHandshakeComplete {
            tls.sendCloseNotify()
            sendCiphertext(context, promise: nil)
        }
        closed = true
        context.close(mode: mode, promise: promise)
    }

    private func fail(_ context: ChannelHandlerContext) {
        closed = true
        context.close(promise: nil)
    }
}
