import Testing
import URing

struct UserDataTests {
    @Test func packUnpackProperty() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let kind = UInt8.random(in: .min ... .max, using: &rng)
            let slot = UInt32.random(in: .min ... .max, using: &rng)
            let generation = UInt32.random(in: 0...UserData.generationMask, using: &rng)
            let u = UserData(kind: .init(rawValue: kind), slot: slot, generation: generation)
            #expect(u.kind.rawValue == kind)
            #expect(u.slot == slot)
            #expect(u.generation == generation)
            #expect(UserData(rawValue: u.rawValue) == u)
        }
    }

    @Test func edgeValues() {
        let max = UserData(kind: .init(rawValue: 0xFF), slot: .max, generation: .max)
        #expect(max.rawValue == .max)
        #expect(max.generation == UserData.generationMask)
        #expect(UserData(kind: .init(rawValue: 0), slot: 0).rawValue == 0)
        #expect(UserData(kind: .init(rawValue: 1), slot: 2, generation: 3).rawValue == 0x0100_0003_0000_0002)
    }

    @Test func generationWrapsAndStaleIsDetected() {
        #expect(UserData.nextGeneration(after: UserData.generationMask) == 0)
        #expect(UserData.nextGeneration(after: 41) == 42)
        let old = UserData(kind: .init(rawValue: 2), slot: 17, generation: 41)
        let current = UserData(kind: .init(rawValue: 2), slot: 17, generation: UserData.nextGeneration(after: 41))
        #expect(old.slot == current.slot && old.generation != current.generation && old != current)
    }
}
