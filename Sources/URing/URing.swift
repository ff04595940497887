// URing: a typed Swift wrapper over one io_uring, for uturn's data path.
//
// Types, by file:
//   Ring.swift            Ring (~Copyable): setup ladder, submit / wait, CQE reaping
//   Ring+Prepare.swift    prepare* methods (RECVMSG multishot / single-shot,
//                         SENDMSG, timeouts, cancel, read, MSG_RING, NOP)
//   RingOptions.swift     RingOptions, SetupRung
//   KernelFeatures.swift  KernelFeatures.probe(): what the kernel offers, what was chosen
//   BufferRing.swift      BufferRing (~Copyable): provided buffer ring, recycle / publish
//   ReceiveMessage.swift  ReceiveMessageHeader, ReceivedMessage, ControlMessages (cmsgs, UDP_SEGMENT)
//   SendMessageSlots.swift preallocated msghdr + iovecs + GSO cmsg per in-flight send
//   Completion.swift      Completion (CQE): userData, result, flags, hasMore, bufferID
//   UserData.swift        (kind, generation, slot) packing of user_data
//   Waker.swift           cross-thread wake-up over an eventfd
//   Socket.swift          UDPSocket: socket options, bind, plain send/receive
//   SocketAddress.swift   SocketAddress: sockaddr_in/in6 <-> (family, 16 bytes, port);
//                         Relay converts to STUN's TransportAddress (URing does not import STUN)
//   Errno.swift           Errno, URingError, explainUnavailable
//
// The engine loop this module is shaped for (one thread, ring created on it):
//
//   var ring = try Ring(options: options)                  // log KernelFeatures.probe(options:) once
//   var buffers = try BufferRing(ring: &ring, groupID: 0, count: 4096, bufferSize: 2048)
//   let header = ReceiveMessageHeader()                     // one for all multishot receives
//   let waker = try ring.makeWaker()                        // hand to the signal / control thread
//   for socket in sockets {                                 // arm one multishot receive per socket
//       ring.prepareReceiveMessageMultishot(socket: fd, header: header, bufferGroup: 0,
//                                           userData: UserData(kind: .listen, slot: s, generation: g))
//   }
//   var cqes = UnsafeMutableBufferPointer<Completion>.allocate(capacity: 256)
//   while running {
//       try ring.submitAndWait(minComplete: 1, timeout: nextTimer)
//       let n = ring.reapCompletions(into: cqes)           // ring is free while walking copies
//       for cqe in cqes[0..<n] {
//           switch cqe.userData.kind {
//           case .listen, .relay:
//               if let id = cqe.bufferID {
//                   if let msg = header.parseMultishot(buffer: buffers.buffer(id), length: cqe.result) {
//                       dispatch(msg)                     // may keep buffer `id` for a zero-copy send
//                   }
//                   if not kept { buffers.recycle(id) }
//               }
//               if !cqe.hasMore { mark socket for re-arm }  // -ENOBUFS, error, or -ECANCELED (closed)
//           case .send:                                   // slot = SendMessageSlots index
//               recycle the buffers behind that send's iovecs; on EINVAL/EIO/ENOPROTOOPT turn GSO off
//           case .wake: check shutdown
//           ...
//           }
//       }
//       buffers.publishRecycled()                         // one tail store for the whole batch
//       re-arm ended receives (after publishing, so buffers exist), flush the send batcher:
//       sends.prepare(slot, destination:, iovecCount:, segmentSize:) + ring.prepareSendMessage(...)
//       // any prepare* returning false: SQ full; call ring.submit() and retry
//   }
//
// Check userData.generation against the slot's current generation before
// touching per-allocation state: a CQE may arrive after its allocation was freed.
// On 5.19 (KernelFeatures.useMultishotReceive == false) use prepareReceiveMessage
// with one ReceiveMessageHeader per socket, parseSingleShot, and re-arm after every CQE.
