import CLibPNG
import CTurboJPEG
import Foundation
import Glibc

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
public struct RGBImage: Sendable {
    /// Width in pixels.
    public var width: Int
    /// Height in pixels.
    public var height: Int
    /// `width · height · 3` bytes, R G B.
    public var pixels: [UInt8]
    /// What the decoder warned about (a truncated or damaged JPEG whose
    /// missing part it filled in), or nil for a clean decode.
    public var warning: String?

    /// An image over `pixels` (`width · height · 3` bytes).
    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3)
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// Why an image could not be decoded.
public enum ImageError: Error, Equatable, CustomStringConvertible {
    case unreadable(path: String, errno: Int32)
    case unknownFormat(path: String)
    case corrupt(path: String, reason: String)
    case tooLarge(path: String, width: Int, height: Int)

    public var description: String {
        switch self {
        case let .unreadable(path, e): "cannot read \(path): \(String(cString: strerror(e)))"
        case let .unknownFormat(path): "\(path) is neither JPEG nor PNG"
        case let .corrupt(path, reason): "cannot decode \(path): \(reason)"
        case let .tooLarge(path, w, h): "\(path) is \(w)×\(h), larger than the 16384×16384 this example takes"
        }
    }
}

/// Decodes JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng's simplified
/// API) files to RGB, chosen by the file's magic bytes.
public enum ImageDecoder {
    static let maximumSide = 16384

    /// Reads and decodes `path`.
    public static func decode(contentsOf path: String) throws(ImageError) -> RGBImage {
        // open + fstat + read, so the error is this file's own errno (and a
        // directory or FIFO is refused without blocking).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw .unreadable(path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .unreadable(path: path, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw .unreadable(path: path, errno: st.st_mode & S_IFMT == S_IFDIR ? EISDIR : EINVAL)
        }
        guard st.st_size <= 256 << 20 else { throw .corrupt(path: path, reason: "\(st.st_size) bytes is too large for an image") }
        var data = Data(count: Int(st.st_size))
        var got = 0
        while got < data.count {
            let n = data.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw .unreadable(path: path, errno: n < 0 ? errno : EIO) }
            got += n
        }
        return try decode(data, name: path)
    }

    /// Decodes an in-memory JPEG or PNG; `name` is used in errors.
    public static func decode(_ data: Data, name: String) throws(ImageError) -> RGBImage {
        // The decoders read the file's bytes in place; only the pixels are allocated.
        let result = data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Result<RGBImage, ImageError> in
            let bytes = bytes.bindMemory(to: UInt8.self)
            if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
                return Result { () throws(ImageError) in try decodeJPEG(bytes, name: name) }
            }
            if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
                return Result { () throws(ImageError) in try decodePNG(bytes, name: name) }
            }
            return .failure(.unknownFormat(path: name))
        }
        return try result.get()
    }

    static func decodeJPEG(_ bytes: UnsafeBufferPointer<UInt8>, name: String) throws(ImageError) -> RGBImage {
        guard let handle = tjInitDecompress() else { throw .corrupt(path: name, reason: "tjInitDecompress failed") }
        defer { tjDestroy(handle) }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = tjDecompressHeader3(handle, bytes.baseAddress, UInt(bytes.count), &width, &height, &subsampling, &colorspace)
        guard header == 0 else { throw .corrupt(path: name, reason: String(cString: tjGetErrorStr2(handle))) }
        try checkSize(Int(width), Int(height), name)
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * 3)
        let status = pixels.withUnsafeMutableBufferPointer { dst in
            tjDecompress2(
                handle, bytes.baseAddress, UInt(bytes.count), dst.baseAddress, width, 0, height,
                Int32(TJPF_RGB.rawValue), 0)
        }
        // Warnings (tjGetErrorCode == TJERR_WARNING) leave a usable image; errors do not.
        guard status == 0 || tjGetErrorCode(handle) == Int32(TJERR_WARNING.rawValue) else {
            throw .corrupt(path: name, reason: String(cString: tjGetErrorStr2(handle)))
        }
        var image = RGBImage(width: Int(width), height: Int(height), pixels: pixels)
        if status != 0 { image.warning = "\(name): \(String(cString: tjGetErrorStr2(handle)))" }
        return image
    }

    static func decodePNG(_ bytes: UnsafeBufferPointer<UInt8>, name: String) throws(ImageError) -> RGBImage {
        var image = png_image()
        image.version = UInt32(PNG_IMAGE_VERSION)
        let begun = png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count)
        guard begun != 0 else { throw .corrupt(path: name, reason: pngMessage(&image)) }
        defer { png_image_free(&image) }
        try checkSize(Int(image.width), Int(image.height), name)
        image.format = UInt32(PNG_FORMAT_RGB)
        var pixels = [UInt8](repeating: 0, count: Int(image.width) * Int(image.height) * 3)
        let finished = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard finished != 0 else { throw .corrupt(path: name, reason: pngMessage(&image)) }
        return RGBImage(width: Int(image.width), height: Int(image.height), pixels: pixels)
    }

    static func pngMessage(_ image: inout png_image) -> String {
        withUnsafeBytes(of: &image.message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    static func checkSize(_ width: Int, _ height: Int, _ name: String) throws(ImageError) {
        guard width > 0, height > 0 else { throw .corrupt(path: name, reason: "empty image") }
        guard width <= maximumSide, height <= maximumSide else { throw .tooLarge(path: name, width: width, height: height) }
    }
}
