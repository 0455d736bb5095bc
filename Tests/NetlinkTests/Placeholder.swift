// NetlinkTests: placeholder until the first real tests land.
import Testing
