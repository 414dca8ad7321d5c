@_exported import FabricQueue

/// What the controller uses to post commands: wraps any producing ring end,
/// numbers commands, stamps the producer id and submit time.
///
/// ```swift
/// let region = try SharedRegion.attach(at: "/dev/shm/daemon")
/// var submitter = CommandSubmitter(try MPSCProducer<Descriptor>(region: region), producerID: 7)
/// if let id = submitter.submit(modelID: 1, input: 0..<602_112, output: 602_112..<606_112) { … }
/// ```
///
/// Sessions, the buffer pool and completions arrive with the session layer.
public struct CommandSubmitter<Ring: RingProducer & ~Copyable>: ~Copyable where Ring.Element == Descriptor {
    @usableFromInline var ring: Ring
    /// Stamped into every descriptor's ``Descriptor/producerID``.
    public let producerID: UInt32
    /// The id the next command gets.
    public private(set) var nextCommandID: UInt64

    /// Wraps `ring`; command ids start at `firstCommandID`.
    public init(_ ring: consuming Ring, producerID: UInt32, firstCommandID: UInt64 = 0) {
        self.ring = ring
        self.producerID = producerID
        self.nextCommandID = firstCommandID
    }

    /// Posts one command; returns its id, or `nil` when the ring is full.
    ///
    /// - Parameters:
    ///   - modelID: the model to run.
    ///   - input: byte range of the input in the data region.
    ///   - output: byte range the output may fill.
    ///   - flags: command options.
    ///   - userData: returned with the completion.
    public mutating func submit(modelID: UInt32, input: Range<UInt64>, output: Range<UInt64>,
                                flags: UInt32 = 0, userData: UInt64 = 0) -> UInt64? {
        precondition(input.count <= UInt32.max && output.count <= UInt32.max, "buffers are limited to 4 GiB")
        let id = nextCommandID
        let descriptor = Descriptor(
            commandID: id, modelID: modelID, flags: flags,
            inputOffset: input.lowerBound, inputSize: UInt32(input.count),
            outputOffset: output.lowerBound, outputCapacity: UInt32(output.count),
            submitTimestamp: MonotonicClock.now(), producerID: producerID, userData: userData)
        guard ring.enqueue(descriptor) else { return nil }
        nextCommandID &+= 1
        return id
    }

    /// Slots in use on the ring: a monitoring estimate.
    public var approximateQueueDepth: Int { ring.approximateCount }
}
