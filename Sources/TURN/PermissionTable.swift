import STUN

/// Permissions (RFC 8656 §9): per allocation, by peer IP address only (the
/// port is ignored), 300 s each, refreshed by CreatePermission and ChannelBind.
extension AllocationTable {
    /// True when `ip` has an unexpired permission on `id`. Data path.
    @inline(__always)
    public func isPermitted(_ ip: IPAddress, in id: AllocationID, now: MonotonicTime) -> Bool {
        guard let i = permissionIndex.get(PermissionKey(slot: id.slot, ip: ip)) else { return false }
        // The index is keyed by slot only; a stale id must not see its successor's permissions.
        return permissions[Int(i)].expiresAt > now.seconds && records[Int(id.slot)].generation == id.generation
    }

    /// Installs or refreshes the permission for `ip`. False when the
    /// allocation already holds its maximum of unexpired permissions (508).
    public mutating func installPermission(_ ip: IPAddress, in id: AllocationID, now: MonotonicTime) -> Bool {
        guard isLive(id) else { return false }
        let key = PermissionKey(slot: id.slot, ip: ip)
        let expires = now.seconds &+ limits.permissionLifetime
        if let i = permissionIndex.get(key) {
            permissions[Int(i)].expiresAt = expires
            return true
        }
        let p = permissionsPerAllocation
        let base = Int(id.slot) * p
        if Int(records[Int(id.slot)].permissionCount) >= p { sweepPermissions(slot: id.slot, now: now) }
        guard Int(records[Int(id.slot)].permissionCount) < p else { return false }
        for i in base..<base + p where !permissions[i].live {
            permissions[i] = PermissionEntry(ip: ip, expiresAt: expires, live: true)
            permissionIndex.set(key, UInt32(i))
            records[Int(id.slot)].permissionCount += 1
            return true
        }
        return false
    }

    /// Whether a permission could be installed for `ip` without exceeding the
    /// cap (so CreatePermission with several peers is all-or-nothing).
    func canInstallPermissions(_ ips: some Sequence<IPAddress>, in id: AllocationID, now: MonotonicTime) -> Bool {
        guard isLive(id) else { return false }
        var live = 0
        let p = permissionsPerAllocation
        let base = Int(id.slot) * p
        for i in base..<base + p where permissions[i].live && permissions[i].expiresAt > now.seconds { live += 1 }
        var new = 0
        for ip in ips where !isPermitted(ip, in: id, now: now) { new += 1 }
        return live + new <= p
    }

    /// Unexpired permissions of `id` (tests, diagnostics).
    public func permissionCount(of id: AllocationID, now: MonotonicTime) -> Int {
        guard isLive(id) else { return 0 }
        let p = permissionsPerAllocation
        let base = Int(id.slot) * p
        var n = 0
        for i in base..<base + p where permissions[i].live && permissions[i].expiresAt > now.seconds { n += 1 }
        return n
    }

    mutating func sweepPermissions(slot: UInt32, now: MonotonicTime) {
        let p = permissionsPerAllocation
        let base = Int(slot) * p
        for i in base..<base + p where permissions[i].live && permissions[i].expiresAt <= now.seconds {
            permissionIndex.remove(PermissionKey(slot: slot, ip: permissions[i].ip))
            permissions[i].live = false
            records[Int(slot)].permissionCount -= 1
        }
    }
}
