// FrameFlow: a bounded flow of frames from a test thread, for tests that disturb a port while
// frames flow toward it. It runs until asked to finish and then sends a given number more, so
// the disturbance always happens mid-flow however the threads are scheduled; bounded in frames
// and in time either way.
import Foundation

final class FrameFlow: @unchecked Sendable {
    private let lock = NSLock()
    private var sent = 0
    private var stopAt = Int.max
    private let done = DispatchSemaphore(value: 0)

    /// Starts sending with `send` (one frame per call) on a thread of its own, at most
    /// `maxFrames` frames or for `seconds`.
    init(maxFrames: Int = 200_000, seconds: Double = 30, send: @escaping @Sendable () -> Void) {
        let thread = Thread { [self] in
            let end = Date().addingTimeInterval(seconds)
            while Date() < end {
                let go = lock.withLock { () -> Bool in
                    guard sent < min(stopAt, maxFrames) else { return false }
                    sent += 1
                    return true
                }
                guard go else { break }
                send()
            }
            done.signal()
        }
        thread.start()
    }

    /// Sends `more` frames after this point, then stops; returns how many it sent in all.
    func finish(after more: Int) -> Int {
        lock.withLock { stopAt = sent + more }
        _ = done.wait(timeout: .now() + 60)
        return lock.withLock { sent }
    }
}
