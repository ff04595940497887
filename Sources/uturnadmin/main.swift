// uturnadmin: coturn turnadmin-compatible user and secret administration
// (UserStores/AdminCommand.swift holds the parsing and the work).
import Glibc
import UserStores

do throws(StoreError) {
    let command = try AdminCommand(arguments: Array(CommandLine.arguments.dropFirst()))
    for line in try command.run() { print(line) }
    exit(0)
} catch {
    let text = Array("uturnadmin: \(error.description)\n".utf8)
    _ = text.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}
